//! ESMTP parameters as first-class client options — BODY (RFC 6152, RFC 3030), SIZE
//! (RFC 1870), SMTPUTF8 (RFC 6531), REQUIRETLS (RFC 8689), DSN (RFC 3461) and the user's own
//! MAIL/RCPT parameters — and the check, before MAIL is sent, that the server offered every
//! extension they need: refused with a clear reason, or, with `lax`, sent anyway and marked
//! with a finding.

use crate::finding::{
    FindingKind, SMTP_CLIENT_LAX_FORBIDDEN, SMTP_CLIENT_LAX_OVERSIZE, SMTP_CLIENT_LAX_UNADVERTISED,
};
use crate::smtp::client::{ClientOptions, FailedStep};
use crate::smtp::command::{orcpt, xtext};
use crate::smtp::data::has_8bit;
use crate::smtp::ehlo::Capabilities;

/// The `BODY=` value (RFC 6152 §2, RFC 3030 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyType {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME`: needs CHUNKING, so the message always goes with BDAT.
    BinaryMime,
}

impl BodyType {
    /// The parameter value.
    pub fn keyword(self) -> &'static str {
        match self {
            BodyType::SevenBit => "7BIT",
            BodyType::EightBitMime => "8BITMIME",
            BodyType::BinaryMime => "BINARYMIME",
        }
    }

    /// Parses `7bit`, `8bitmime` or `binarymime` (any case).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "7BIT" => BodyType::SevenBit,
            "8BITMIME" | "8BIT" => BodyType::EightBitMime,
            "BINARYMIME" | "BINARY" => BodyType::BinaryMime,
            _ => return None,
        })
    }

    /// The EHLO keyword that must be offered for this value.
    fn extension(self) -> &'static str {
        match self {
            // RFC 6152 defines BODY=7BIT and BODY=8BITMIME together.
            BodyType::SevenBit | BodyType::EightBitMime => "8BITMIME",
            BodyType::BinaryMime => "BINARYMIME",
        }
    }
}

/// One `NOTIFY=` value (RFC 3461 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DsnNotify {
    /// `NEVER` (must stand alone).
    Never,
    /// `SUCCESS`.
    Success,
    /// `FAILURE`.
    Failure,
    /// `DELAY`.
    Delay,
}

impl DsnNotify {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            DsnNotify::Never => "NEVER",
            DsnNotify::Success => "SUCCESS",
            DsnNotify::Failure => "FAILURE",
            DsnNotify::Delay => "DELAY",
        }
    }

    /// Parses one keyword (any case).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "NEVER" => DsnNotify::Never,
            "SUCCESS" => DsnNotify::Success,
            "FAILURE" => DsnNotify::Failure,
            "DELAY" => DsnNotify::Delay,
            _ => return None,
        })
    }
}

/// The `RET=` value (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DsnRet {
    /// `RET=FULL`: return the whole message in a failure DSN.
    Full,
    /// `RET=HDRS`: only its header.
    Hdrs,
}

impl DsnRet {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            DsnRet::Full => "FULL",
            DsnRet::Hdrs => "HDRS",
        }
    }

    /// Parses `full` or `hdrs` (any case).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "FULL" => DsnRet::Full,
            "HDRS" => DsnRet::Hdrs,
            _ => return None,
        })
    }
}

/// Delivery status notification requests (RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnOptions {
    /// `NOTIFY=` on every RCPT; empty: none.
    pub notify: Vec<DsnNotify>,
    /// `RET=` on MAIL.
    pub ret: Option<DsnRet>,
    /// `ENVID=` on MAIL, as plain text (xtext-encoded when sent).
    pub envid: Option<String>,
    /// `ORCPT=` on every RCPT, naming the recipient address itself (`rfc822;`, or `utf-8;`
    /// for an internationalised address).
    pub orcpt: bool,
}

impl DsnOptions {
    /// Whether no DSN parameter is asked for.
    pub fn is_empty(&self) -> bool {
        self.notify.is_empty() && self.ret.is_none() && self.envid.is_none() && !self.orcpt
    }

    /// What RFC 3461 forbids in these options themselves (sent anyway with `lax`).
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.notify.contains(&DsnNotify::Never) && self.notify.len() > 1 {
            out.push("NOTIFY=NEVER must not be combined with other values (RFC 3461 §4.1)".into());
        }
        if let Some(e) = &self.envid
            && e.len() > 100
        {
            out.push(format!(
                "ENVID is {} characters; RFC 3461 §4.4 allows 100",
                e.len()
            ));
        }
        out
    }
}

/// What the transaction will send, decided before MAIL.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// MAIL FROM parameters, in order.
    pub(crate) mail_params: Vec<String>,
    /// RCPT TO parameters, the same for every recipient except ORCPT; per recipient.
    pub(crate) rcpt_params: Vec<Vec<String>>,
    /// Whether the message goes with BDAT.
    pub(crate) bdat: bool,
    /// Whether BODY=8BITMIME or BINARYMIME was declared.
    pub(crate) eight_bit_declared: bool,
    /// Deviations `lax` allowed, to raise as findings.
    pub(crate) findings: Vec<(&'static FindingKind, String)>,
    /// mailscope's remarks.
    pub(crate) notes: Vec<String>,
}

/// Why the transaction was not started.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The step the refusal counts as (its exit code).
    pub(crate) step: FailedStep,
    /// One line.
    pub(crate) reason: String,
}

/// What the message is, for the plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageFacts {
    /// RFC 1870 size.
    pub(crate) size: usize,
    /// Whether it has octets above 127.
    pub(crate) eight_bit: bool,
}

impl MessageFacts {
    pub(crate) fn of(content: &[u8], size: usize) -> Self {
        Self {
            size,
            eight_bit: has_8bit(content),
        }
    }
}

struct Planner<'a> {
    caps: &'a Capabilities,
    lax: bool,
    plan: Plan,
}

impl Planner<'_> {
    /// `what` needs `ext`: fine if offered; with lax a finding; otherwise the refusal.
    fn need(&mut self, ext: &str, what: &str, step: FailedStep) -> Result<(), Refusal> {
        if self.caps.has(ext) {
            return Ok(());
        }
        if self.lax {
            self.plan.findings.push((
                SMTP_CLIENT_LAX_UNADVERTISED,
                format!("{what} sent although the server does not offer {ext}"),
            ));
            return Ok(());
        }
        Err(Refusal {
            step,
            reason: format!(
                "the server does not offer {ext}, needed for {what} (--lax sends it anyway)"
            ),
        })
    }

    fn forbidden(&mut self, what: String, step: FailedStep) -> Result<(), Refusal> {
        if self.lax {
            self.plan.findings.push((SMTP_CLIENT_LAX_FORBIDDEN, what));
            return Ok(());
        }
        Err(Refusal {
            step,
            reason: format!("{what} (--lax sends it anyway)"),
        })
    }

    /// A user parameter: its extension, if mailscope knows it, must be offered.
    fn user_param(&mut self, param: &str, command: &str, step: FailedStep) -> Result<(), Refusal> {
        let (keyword, value) = param.split_once('=').unwrap_or((param, ""));
        let keyword = keyword.to_ascii_uppercase();
        let ext = match keyword.as_str() {
            "BODY" if value.eq_ignore_ascii_case("BINARYMIME") => Some("BINARYMIME"),
            "BODY" => Some("8BITMIME"),
            "SIZE" => Some("SIZE"),
            "SMTPUTF8" => Some("SMTPUTF8"),
            "REQUIRETLS" => Some("REQUIRETLS"),
            "RET" | "ENVID" | "NOTIFY" | "ORCPT" => Some("DSN"),
            "AUTH" => Some("AUTH"),
            "MT-PRIORITY" => Some("MT-PRIORITY"),
            "HOLDFOR" | "HOLDUNTIL" => Some("FUTURERELEASE"),
            "BY" => Some("DELIVERBY"),
            "MTRK" => Some("MTRK"),
            "RRVS" => Some("RRVS"),
            "TRANSID" => Some("XEXCH50"),
            _ => None,
        };
        match ext {
            Some(ext) => self.need(ext, &format!("the {command} parameter {param}"), step),
            None if self.caps.has(&keyword) => Ok(()),
            None => {
                self.plan.notes.push(format!(
                    "{command} parameter {param}: no extension is known for it and the server advertises no {keyword}; sent as given"
                ));
                Ok(())
            }
        }
    }
}

/// Decides the MAIL and RCPT parameters and DATA or BDAT for one transaction. `message` is
/// `None` without message data; `probe` makes it a smuggling probe (DATA only, no BODY).
pub(crate) fn plan(
    opts: &ClientOptions,
    caps: &Capabilities,
    tls: bool,
    message: Option<MessageFacts>,
    probe: bool,
) -> Result<Plan, Refusal> {
    let mut p = Planner {
        caps,
        lax: opts.lax,
        plan: Plan::default(),
    };
    let binary = opts.body_type == Some(BodyType::BinaryMime);
    if message.is_some() && !probe && (opts.chunking || binary) {
        p.plan.bdat = true;
        if binary && !opts.chunking {
            p.plan
                .notes
                .push("BODY=BINARYMIME: the message goes with BDAT (RFC 3030 §3)".into());
        }
        p.need("CHUNKING", "BDAT", FailedStep::Data)?;
    }
    // SIZE first: the check that a too-big message is refused before anything is sent.
    if let Some(m) = message {
        if let Some(limit) = caps.size_limit().filter(|l| *l > 0)
            && m.size as u64 > limit
        {
            let what = format!(
                "the message is {} octets, over the server's SIZE limit of {limit}",
                m.size
            );
            if opts.lax {
                p.plan.findings.push((SMTP_CLIENT_LAX_OVERSIZE, what));
            } else {
                return Err(Refusal {
                    step: FailedStep::Mail,
                    reason: format!("{what} (--lax sends it anyway)"),
                });
            }
        }
        if opts.declare_size && caps.has("SIZE") {
            p.plan.mail_params.push(format!("SIZE={}", m.size));
        }
    }
    match (opts.body_type, message) {
        (Some(body), Some(_)) if !probe => {
            p.need(
                body.extension(),
                &format!("BODY={}", body.keyword()),
                FailedStep::Mail,
            )?;
            p.plan.mail_params.push(format!("BODY={}", body.keyword()));
            p.plan.eight_bit_declared = body != BodyType::SevenBit;
        }
        (None, Some(m)) if m.eight_bit && caps.has("8BITMIME") => {
            p.plan.mail_params.push("BODY=8BITMIME".into());
            p.plan.eight_bit_declared = true;
        }
        _ => {}
    }
    let non_ascii = std::iter::once(&opts.from)
        .chain(opts.to.iter())
        .find(|a| !a.is_ascii());
    if opts.smtputf8 || non_ascii.is_some() {
        let what = match non_ascii {
            Some(a) if !opts.smtputf8 => {
                p.plan.notes.push(format!(
                    "the address <{a}> is not ASCII: MAIL gets SMTPUTF8 (RFC 6531)"
                ));
                format!("the non-ASCII address <{a}>")
            }
            _ => "SMTPUTF8".to_string(),
        };
        p.need("SMTPUTF8", &what, FailedStep::Mail)?;
        p.plan.mail_params.push("SMTPUTF8".into());
    }
    if opts.requiretls {
        if !tls {
            p.forbidden(
                "REQUIRETLS is only valid over TLS (RFC 8689 §4.1; use --tls)".into(),
                FailedStep::Mail,
            )?;
        }
        p.need("REQUIRETLS", "REQUIRETLS", FailedStep::Mail)?;
        p.plan.mail_params.push("REQUIRETLS".into());
    }
    if !opts.dsn.is_empty() {
        for problem in opts.dsn.problems() {
            p.forbidden(problem, FailedStep::Mail)?;
        }
        p.need("DSN", "NOTIFY, RET, ENVID and ORCPT", FailedStep::Mail)?;
        if let Some(ret) = opts.dsn.ret {
            p.plan.mail_params.push(format!("RET={}", ret.keyword()));
        }
        if let Some(envid) = &opts.dsn.envid {
            p.plan
                .mail_params
                .push(format!("ENVID={}", xtext(envid.as_bytes())));
        }
    }
    for param in &opts.mail_params {
        p.user_param(param, "MAIL", FailedStep::Mail)?;
        p.plan.mail_params.push(param.clone());
    }
    for param in &opts.rcpt_params {
        p.user_param(param, "RCPT", FailedStep::Rcpt)?;
    }
    let notify = (!opts.dsn.notify.is_empty()).then(|| {
        let v: Vec<&str> = opts.dsn.notify.iter().map(|n| n.keyword()).collect();
        format!("NOTIFY={}", v.join(","))
    });
    p.plan.rcpt_params = opts
        .to
        .iter()
        .map(|to| {
            let mut v: Vec<String> = notify.iter().cloned().collect();
            if opts.dsn.orcpt {
                v.push(format!("ORCPT={}", orcpt(to)));
            }
            v.extend(opts.rcpt_params.iter().cloned());
            v
        })
        .collect();
    Ok(p.plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::{Decoded, ReplyLimits, decode_reply};

    fn caps(keywords: &[&str]) -> Capabilities {
        let mut text = String::from("250-mx.example.test\r\n");
        for (i, k) in keywords.iter().enumerate() {
            let sep = if i + 1 == keywords.len() { ' ' } else { '-' };
            text.push_str(&format!("250{sep}{k}\r\n"));
        }
        match decode_reply(text.as_bytes(), &ReplyLimits::default()) {
            Ok(Decoded::Complete { value, .. }) => Capabilities::from_reply(&value.reply),
            other => panic!("{other:?}"),
        }
    }

    fn opts() -> ClientOptions {
        ClientOptions {
            from: "alice@example.test".into(),
            to: vec!["bob@example.test".into(), "carol+x@example.test".into()],
            ..ClientOptions::default()
        }
    }

    const MSG: Option<MessageFacts> = Some(MessageFacts {
        size: 1000,
        eight_bit: false,
    });

    #[test]
    fn everything_offered_gives_the_parameters_in_order() {
        let mut o = opts();
        o.body_type = Some(BodyType::EightBitMime);
        o.smtputf8 = true;
        o.requiretls = true;
        o.dsn = DsnOptions {
            notify: vec![DsnNotify::Success, DsnNotify::Failure],
            ret: Some(DsnRet::Hdrs),
            envid: Some("QQ 314159=".into()),
            orcpt: true,
        };
        o.mail_params = vec!["MT-PRIORITY=3".into()];
        o.rcpt_params = vec!["XFOO".into()];
        let c = caps(&[
            "SIZE 2000",
            "8BITMIME",
            "SMTPUTF8",
            "REQUIRETLS",
            "DSN",
            "MT-PRIORITY",
        ]);
        let p = plan(&o, &c, true, MSG, false).expect("plan");
        assert_eq!(
            p.mail_params,
            vec![
                "SIZE=1000",
                "BODY=8BITMIME",
                "SMTPUTF8",
                "REQUIRETLS",
                "RET=HDRS",
                "ENVID=QQ+20314159+3D",
                "MT-PRIORITY=3"
            ]
        );
        assert_eq!(
            p.rcpt_params,
            vec![
                vec![
                    "NOTIFY=SUCCESS,FAILURE",
                    "ORCPT=rfc822;bob@example.test",
                    "XFOO"
                ],
                vec![
                    "NOTIFY=SUCCESS,FAILURE",
                    "ORCPT=rfc822;carol+2Bx@example.test",
                    "XFOO"
                ]
            ]
        );
        assert!(p.eight_bit_declared && !p.bdat && p.findings.is_empty());
        assert_eq!(p.notes.len(), 1, "XFOO is unknown: {:?}", p.notes);
    }

    #[test]
    fn each_missing_extension_is_refused_or_sent_with_lax() {
        type Set = Box<dyn Fn(&mut ClientOptions)>;
        let cases: Vec<(Set, FailedStep, &str)> = vec![
            (
                Box::new(|o| o.chunking = true),
                FailedStep::Data,
                "CHUNKING",
            ),
            (
                Box::new(|o| o.body_type = Some(BodyType::BinaryMime)),
                FailedStep::Data,
                "CHUNKING",
            ),
            (
                Box::new(|o| o.body_type = Some(BodyType::SevenBit)),
                FailedStep::Mail,
                "8BITMIME",
            ),
            (
                Box::new(|o| o.smtputf8 = true),
                FailedStep::Mail,
                "SMTPUTF8",
            ),
            (
                Box::new(|o| o.to = vec!["jöe@exämple.test".into()]),
                FailedStep::Mail,
                "non-ASCII address",
            ),
            (
                Box::new(|o| o.dsn.ret = Some(DsnRet::Full)),
                FailedStep::Mail,
                "DSN",
            ),
            (
                Box::new(|o| o.mail_params = vec!["HOLDFOR=60".into()]),
                FailedStep::Mail,
                "FUTURERELEASE",
            ),
            (
                Box::new(|o| o.rcpt_params = vec!["NOTIFY=NEVER".into()]),
                FailedStep::Rcpt,
                "DSN",
            ),
        ];
        let none = caps(&["PIPELINING"]);
        for (set, step, needle) in cases {
            let mut o = opts();
            set(&mut o);
            let e = plan(&o, &none, true, MSG, false).expect_err("refused");
            assert_eq!(e.step, step, "{}", e.reason);
            assert!(e.reason.contains(needle), "{}", e.reason);
            assert!(e.reason.contains("--lax"), "{}", e.reason);
            o.lax = true;
            let p = plan(&o, &none, true, MSG, false).expect("lax");
            assert!(
                p.findings
                    .iter()
                    .all(|(k, _)| k.id == "smtp.client.lax-unadvertised")
                    && !p.findings.is_empty(),
                "{:?}",
                p.findings
            );
        }
    }

    #[test]
    fn size_is_declared_when_offered_and_checked_against_the_limit() {
        let o = opts();
        let p = plan(&o, &caps(&["SIZE"]), false, MSG, false).expect("plan");
        assert_eq!(p.mail_params, vec!["SIZE=1000"], "SIZE without a limit");
        let e = plan(&o, &caps(&["SIZE 999"]), false, MSG, false).expect_err("too big");
        assert_eq!(e.step, FailedStep::Mail);
        assert!(e.reason.contains("1000 octets") && e.reason.contains("999"));
        let mut lax = o.clone();
        lax.lax = true;
        let p = plan(&lax, &caps(&["SIZE 999"]), false, MSG, false).expect("lax");
        assert_eq!(p.findings[0].0.id, "smtp.client.lax-oversize");
        let mut off = o;
        off.declare_size = false;
        let p = plan(&off, &caps(&["SIZE 2000"]), false, MSG, false).expect("plan");
        assert!(p.mail_params.is_empty());
        assert!(
            plan(&off, &caps(&["SIZE"]), false, None, false)
                .expect("no data")
                .mail_params
                .is_empty()
        );
    }

    #[test]
    fn requiretls_without_tls_and_bad_dsn_are_forbidden() {
        let mut o = opts();
        o.requiretls = true;
        let c = caps(&["REQUIRETLS", "DSN"]);
        let e = plan(&o, &c, false, MSG, false).expect_err("no TLS");
        assert!(e.reason.contains("only valid over TLS"), "{}", e.reason);
        o.requiretls = false;
        o.dsn.notify = vec![DsnNotify::Never, DsnNotify::Delay];
        o.dsn.envid = Some("x".repeat(101));
        assert!(plan(&o, &c, true, MSG, false).is_err());
        o.lax = true;
        let p = plan(&o, &c, true, MSG, false).expect("lax");
        let ids: Vec<_> = p.findings.iter().map(|(k, _)| k.id).collect();
        assert_eq!(
            ids,
            vec!["smtp.client.lax-forbidden", "smtp.client.lax-forbidden"]
        );
        assert_eq!(p.rcpt_params[0], vec!["NOTIFY=NEVER,DELAY"]);
    }

    #[test]
    fn eight_bit_is_declared_automatically_only_when_offered() {
        let o = opts();
        let m = Some(MessageFacts {
            size: 3,
            eight_bit: true,
        });
        let p = plan(&o, &caps(&["8BITMIME"]), false, m, false).expect("plan");
        assert_eq!(p.mail_params, vec!["BODY=8BITMIME"]);
        assert!(p.eight_bit_declared);
        let p = plan(&o, &caps(&["PIPELINING"]), false, m, false).expect("plan");
        assert!(p.mail_params.is_empty() && !p.eight_bit_declared);
        let p = plan(&o, &caps(&["8BITMIME"]), false, m, true).expect("probe");
        assert!(p.mail_params.contains(&"BODY=8BITMIME".to_string()));
    }
}
