//! `mailscope relay-test HOST[:PORT]`: is this server an open relay? It tries the sixteen
//! MAIL FROM / RCPT TO combinations of nmap's smtp-open-relay script (the null sender, the
//! server's own name and address literal as sender, the %-hack, bang paths, quoted local
//! parts, source routes, double `@`) and reports which recipient the server accepted.
//!
//! It goes no further than RCPT: DATA is never sent, so nothing is ever relayed. Each
//! pattern runs in a session of its own through the one SMTP client (the client machine
//! of `mailscope-proto` driven by `mailscope_net::smtp::run_smtp_client`): connect, EHLO,
//! MAIL, RCPT, QUIT. The machine runs one transaction per session, so there is nothing to
//! RSET, and a server that drops the connection after a refusal costs only that pattern
//! (it is retried once on a new connection). A host that is not loopback is only tested
//! with `--yes`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mailscope_net::smtp::{DriverEvent, SessionError, SmtpTarget, now, run_smtp_client};
use mailscope_net::{TlsClient, TlsClientOptions};
use mailscope_proto::Finding;
use mailscope_proto::finding::{RELAY_INCONCLUSIVE, RELAY_OPEN};
use mailscope_proto::smtp::client::{Client, ClientOptions, Event, HelloKind, Outcome, Stage};
use mailscope_proto::smtp::explain::Category;
use mailscope_proto::smtp::reply::{Reply, ReplyLimits};
use serde_json::{Value, json};

use super::{CheckOutput, DnsArgs};
use crate::cli::GlobalArgs;
use crate::{ExitCode, UsageError};

/// Examples shown after `--help`.
pub const RELAY_EXAMPLES: &str = "\
What it sends:
  Sixteen sessions, one per pattern (nmap's smtp-open-relay): EHLO, MAIL FROM, RCPT TO,
  QUIT. Never DATA: nothing is relayed, whatever the server answers. The recipient is
  --to (default relaytest@example.net, a domain reserved for documentation, RFC 2606);
  the senders are antispam@ the --from-domain (default: the --to domain), the server's own
  name (from its greeting) and its address literal ([IP], or --ip).
  A server that checks recipient domains may refuse example.net for that reason alone:
  give --to an address in a real domain you control for a conclusive test.

Verdict:
  open        a RCPT for a foreign domain was accepted (finding relay.open, critical)
  closed      every recipient was refused (4xx/5xx relay denied, 530 authentication required)
  inconclusive  nothing accepted, but no clear refusal either (finding relay.inconclusive)
  Tested from an address the server trusts (its own network, e.g. Postfix mynetworks, or
  loopback), a correctly configured server relays: that is \"open\" for this client only.

Only the host you name is contacted; a host that is not loopback needs --yes.

Examples:
  mailscope relay-test 127.0.0.1:2525
  mailscope relay-test mx.example.net --yes
  mailscope relay-test mx.example.net:25 --yes --to postmaster@my-other-domain.example --helo scanner.example.org
  mailscope relay-test 127.0.0.1:2525 --json | jq 'select(.type==\"check_result\")'";

/// Arguments of `mailscope relay-test`.
#[derive(Debug, Args)]
pub struct RelayTestArgs {
    /// The server to test: host, host:port, [v6]:port (port 25 by default).
    #[arg(value_name = "HOST[:PORT]")]
    pub target: String,
    /// Confirm that you may test this host (needed for anything but a loopback address or
    /// `localhost` resolving to loopback only).
    #[arg(long)]
    pub yes: bool,
    /// Recipient to try to relay to (a domain the server is not responsible for).
    #[arg(long, value_name = "ADDR", default_value = "relaytest@example.net")]
    pub to: String,
    /// Domain of the sender addresses (default: the --to domain, as nmap does).
    #[arg(long, value_name = "DOMAIN")]
    pub from_domain: Option<String>,
    /// Name to send in EHLO (default: the sender domain).
    #[arg(long, value_name = "NAME")]
    pub helo: Option<String>,
    /// Address to put in the [IP] literal patterns (default: the server's address as
    /// connected).
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// Seconds for the connect and for each reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// Local part of the senders (nmap's default).
const FROM_USER: &str = "antispam";

/// One MAIL FROM / RCPT TO combination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// What the pattern tries, for the report.
    name: &'static str,
    /// Reverse path, without brackets (empty: the null sender).
    from: String,
    /// Forward path, without brackets.
    to: String,
}

/// The sixteen patterns of nmap's smtp-open-relay.nse (scripts/smtp-open-relay.nse, the
/// `tests` table), with `to_user@to_domain` as the target, `from_domain` for the senders,
/// `srv` the server's name and `lit` its address literal.
fn patterns(
    to_user: &str,
    to_domain: &str,
    from_domain: &str,
    srv: &str,
    lit: &str,
) -> Vec<Pattern> {
    let to = format!("{to_user}@{to_domain}");
    let f = FROM_USER;
    let p = |name, from: String, to: String| Pattern { name, from, to };
    vec![
        p("null sender", String::new(), to.clone()),
        p("foreign sender", format!("{f}@{from_domain}"), to.clone()),
        p(
            "sender at the server's name",
            format!("{f}@{srv}"),
            to.clone(),
        ),
        p(
            "sender at the server's address",
            format!("{f}@{lit}"),
            to.clone(),
        ),
        p(
            "%-hack at the address",
            format!("{f}@{lit}"),
            format!("{to_user}%{to_domain}@{lit}"),
        ),
        p(
            "%-hack at the name",
            format!("{f}@{lit}"),
            format!("{to_user}%{to_domain}@{srv}"),
        ),
        p("quoted address", format!("{f}@{lit}"), format!("\"{to}\"")),
        p(
            "quoted %-hack",
            format!("{f}@{lit}"),
            format!("\"{to_user}%{to_domain}\""),
        ),
        p(
            "double @ at the address",
            format!("{f}@{lit}"),
            format!("{to}@{lit}"),
        ),
        p(
            "quoted address at the address",
            format!("{f}@{lit}"),
            format!("\"{to}\"@{lit}"),
        ),
        p(
            "double @ at the name",
            format!("{f}@{lit}"),
            format!("{to}@{srv}"),
        ),
        p(
            "source route via the address",
            format!("{f}@{lit}"),
            format!("@{lit}:{to}"),
        ),
        p(
            "source route via the name",
            format!("{f}@{lit}"),
            format!("@{srv}:{to}"),
        ),
        p(
            "bang path",
            format!("{f}@{lit}"),
            format!("{to_domain}!{to_user}"),
        ),
        p(
            "bang path at the address",
            format!("{f}@{lit}"),
            format!("{to_domain}!{to_user}@{lit}"),
        ),
        p(
            "bang path at the name",
            format!("{f}@{lit}"),
            format!("{to_domain}!{to_user}@{srv}"),
        ),
    ]
}

/// An address literal (RFC 5321 §4.1.3).
fn literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// What one pattern's session gave.
#[derive(Debug, Default)]
struct Attempt {
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    banner: Option<Reply>,
    mail: Option<Reply>,
    rcpt: Option<(bool, Reply)>,
    categories: Vec<Category>,
    why: Option<String>,
    outcome: Option<Outcome>,
    /// Connect or implicit-TLS failure.
    error: Option<String>,
}

/// How a pattern came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternResult {
    /// RCPT accepted: relayed (up to RCPT).
    Accepted,
    /// RCPT refused as relaying, or authentication required.
    Refused,
    /// No clear answer: not connected, dropped, MAIL refused, temporary reply, or a
    /// recipient-domain refusal.
    Inconclusive,
}

impl PatternResult {
    fn verdict(self) -> &'static str {
        match self {
            PatternResult::Accepted => "open",
            PatternResult::Refused => "closed",
            PatternResult::Inconclusive => "inconclusive",
        }
    }
}

fn judge(a: &Attempt) -> (PatternResult, String) {
    if let Some(e) = &a.error {
        return (PatternResult::Inconclusive, format!("no session: {e}"));
    }
    let Some((accepted, reply)) = &a.rcpt else {
        if let Some(m) = a.mail.as_ref().filter(|m| !m.is_positive()) {
            let auth = a.categories.contains(&Category::AuthRequired) || m.code == 530;
            if auth {
                return (
                    PatternResult::Refused,
                    format!("MAIL refused, authentication required: {}", m.summary()),
                );
            }
            return (
                PatternResult::Inconclusive,
                format!(
                    "the sender was refused, so the recipient was never tried: {}",
                    m.summary()
                ),
            );
        }
        let how = match &a.outcome {
            Some(Outcome::Failed { reason, .. }) => reason.clone(),
            Some(o) => format!("{o:?}"),
            None => "the session ended early".into(),
        };
        return (
            PatternResult::Inconclusive,
            format!("RCPT was not answered: {how}"),
        );
    };
    if *accepted {
        return (
            PatternResult::Accepted,
            format!("RCPT accepted: {}", reply.summary()),
        );
    }
    let c = &a.categories;
    let relay = c.contains(&Category::RelayDenied);
    let auth = c.contains(&Category::AuthRequired) || reply.code == 530;
    // X.1.2 bad destination system, X.1.10 null MX: refused for the domain, not the relay.
    let domain = c.contains(&Category::NullMx)
        || reply
            .enhanced
            .is_some_and(|e| e.subject == 1 && matches!(e.detail, 2 | 10));
    let why = a.why.as_deref().unwrap_or("");
    if relay || auth {
        (
            PatternResult::Refused,
            format!("RCPT refused: {}{}", reply.summary(), suffix(why)),
        )
    } else if domain || reply.class() == 4 {
        (
            PatternResult::Inconclusive,
            format!(
                "RCPT refused, but not clearly for relaying: {}{}",
                reply.summary(),
                suffix(why)
            ),
        )
    } else {
        (
            PatternResult::Refused,
            format!("RCPT refused: {}{}", reply.summary(), suffix(why)),
        )
    }
}

fn suffix(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    }
}

fn reply_json(r: &Reply) -> Value {
    json!({ "code": r.code, "enhanced_code": r.enhanced.map(|e| e.to_string()), "text": r.text() })
}

/// Whether a host given on the command line is loopback without asking DNS.
fn is_loopback_name(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Runs `mailscope relay-test`.
pub async fn run(global: &GlobalArgs, args: &RelayTestArgs) -> Result<ExitCode> {
    let usage = |m: String| anyhow::Error::from(UsageError(m));
    let (host, port) =
        mailscope_net::parse_server(&args.target, 25).map_err(|e| usage(e.to_string()))?;
    if !args.yes && !is_loopback_name(&host) {
        return Err(usage(format!(
            "{host} is not a loopback address: relay-test sends relay attempts (up to RCPT, never DATA) to it; \
             give --yes to confirm that you are allowed to test this host"
        )));
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(usage(format!(
            "--timeout must be between 0 and 3600 seconds, not {}",
            args.timeout
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let (to_user, to_domain) = match args.to.rsplit_once('@') {
        Some((u, d)) if !u.is_empty() && !d.is_empty() && !args.to.contains(['<', '>', ' ']) => {
            (u.to_owned(), d.to_owned())
        }
        _ => {
            return Err(usage(format!(
                "--to {:?}: expected user@domain (without angle brackets)",
                args.to
            )));
        }
    };
    let from_domain = args
        .from_domain
        .clone()
        .unwrap_or_else(|| to_domain.clone());
    if from_domain.is_empty() || from_domain.contains(['@', '<', '>', ' ']) {
        return Err(usage(format!(
            "--from-domain {from_domain:?} is not a domain"
        )));
    }
    let helo = args.helo.clone().unwrap_or_else(|| from_domain.clone());
    // A name is resolved here, through --resolver like every look-up of the checks, and
    // the session goes to its first address. "localhost" is tested without --yes only
    // when every address it has is loopback.
    let mut connect_host = host.clone();
    let mut resolved = Vec::new();
    if host.parse::<IpAddr>().is_err() {
        let dns = args.dns.dns()?;
        let (v4, v6) = tokio::join!(dns.a(&host), dns.aaaa(&host));
        resolved.extend(v4.records().iter().map(|a| IpAddr::V4(*a)));
        resolved.extend(v6.records().iter().map(|a| IpAddr::V6(*a)));
        let Some(first) = resolved.first().copied() else {
            return Err(usage(format!(
                "cannot resolve {host}: A {}, AAAA {}",
                v4.outcome(),
                v6.outcome()
            )));
        };
        if !args.yes && !resolved.iter().all(IpAddr::is_loopback) {
            return Err(usage(format!(
                "{host} does not resolve to loopback addresses only; give --yes to confirm that you are allowed to test it"
            )));
        }
        connect_host = first.to_string();
    }
    let tls = TlsClient::new(&TlsClientOptions::default()).map_err(|e| usage(e.to_string()))?;
    let target = SmtpTarget {
        host: connect_host,
        port,
        implicit_tls: false,
        timeout,
        local: None,
        proxy: None,
    };
    let subject = format!("{host}:{port}");
    let mut out = CheckOutput::start(global, "relay-test", &subject, &args.dns)?;
    out.note(&format!(
        "testing {subject} for open relaying to {}: one session per pattern, EHLO/MAIL/RCPT/QUIT, never DATA",
        args.to
    ));
    if !resolved.is_empty() {
        let all: Vec<String> = resolved.iter().map(IpAddr::to_string).collect();
        out.note(&format!(
            "{host} has the address(es) {}; testing {}",
            all.join(", "),
            target.host
        ));
    }

    let base = ClientOptions {
        helo_name: helo,
        hello: HelloKind::Ehlo,
        quit_after: Some(Stage::Rcpt),
        reply_limits: ReplyLimits::default(),
        step_timeout_us: u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX),
        declare_size: false,
        ..ClientOptions::default()
    };
    let mut results: Vec<(Pattern, PatternResult, String, Attempt)> = Vec::new();
    // The first pattern needs neither the server's name nor its address; its session
    // tells both.
    let first = patterns(&to_user, &to_domain, &from_domain, "", "").remove(0);
    let a = attempt(&mut out, &target, &tls, &base, &first).await;
    if let Some(e) = a.error.as_ref().filter(|_| a.peer.is_none()) {
        out.result(
            "relay",
            &subject,
            "error",
            &format!("cannot connect: {e}"),
            json!({ "error": e }),
        );
        out.finding(&Finding::new(
            RELAY_INCONCLUSIVE,
            format!("no pattern could be tried: cannot connect to {subject}: {e}"),
        ));
        out.verdict("relay", "error");
        // As `mailscope smtp`: 2 when the connection could not be made.
        return Ok(out.finish_with(global, ExitCode::CONNECT));
    }
    let peer_ip = a.peer.map(|p| p.ip());
    let client_ip = a.local.map(|l| l.ip());
    let srv = a
        .banner
        .as_ref()
        .and_then(|b| b.lines.first())
        .and_then(|l| {
            String::from_utf8_lossy(&l.text)
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .filter(|s| {
            s.contains('.')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| host.clone());
    let lit = literal(args.ip.or(peer_ip).unwrap_or(IpAddr::from([127, 0, 0, 1])));
    let all = patterns(&to_user, &to_domain, &from_domain, &srv, &lit);
    let (r, text) = judge(&a);
    report_pattern(&mut out, 1, &first, r, &text, &a);
    results.push((first, r, text, a));
    for p in all.into_iter().skip(1) {
        let mut a = attempt(&mut out, &target, &tls, &base, &p).await;
        let refused_by_reply =
            matches!(&a.outcome, Some(Outcome::Failed { reply: Some(_), .. })) && a.error.is_none();
        if a.rcpt.is_none() && !refused_by_reply {
            // Not connected, or dropped before RCPT was answered: once more, on a new
            // connection.
            out.note(&format!(
                "pattern \"{}\" got no answer; retrying once on a new connection",
                p.name
            ));
            a = attempt(&mut out, &target, &tls, &base, &p).await;
        }
        let (r, text) = judge(&a);
        report_pattern(&mut out, results.len() + 1, &p, r, &text, &a);
        results.push((p, r, text, a));
    }

    let accepted: Vec<usize> = (0..results.len())
        .filter(|&i| results[i].1 == PatternResult::Accepted)
        .collect();
    let refused = results
        .iter()
        .filter(|r| r.1 == PatternResult::Refused)
        .count();
    let unclear = results
        .iter()
        .filter(|r| r.1 == PatternResult::Inconclusive)
        .count();
    let verdict = if !accepted.is_empty() {
        "open"
    } else if refused > 0 {
        "closed"
    } else {
        "inconclusive"
    };
    let mut text = format!(
        "{} of {} patterns accepted, {refused} refused, {unclear} inconclusive",
        accepted.len(),
        results.len()
    );
    if !accepted.is_empty() {
        let list: Vec<String> = accepted
            .iter()
            .map(|&i| format!("{} ({})", i + 1, results[i].0.name))
            .collect();
        text.push_str(&format!("\naccepted: {}", list.join(", ")));
        if client_ip.is_some_and(|ip| ip.is_loopback() || is_private(ip)) {
            text.push_str(&format!(
                "\nmailscope connected from {}: a server may trust its own or a private network (Postfix mynetworks); test from an outside address to see what the Internet sees",
                client_ip.map(|i| i.to_string()).unwrap_or_default()
            ));
        }
    }
    out.result(
        "relay",
        &subject,
        verdict,
        &text,
        json!({ "accepted": accepted.len(), "refused": refused, "inconclusive": unclear,
                "patterns": results.len(), "client": client_ip.map(|i| i.to_string()),
                "server_name": srv, "literal": lit }),
    );
    if !accepted.is_empty() {
        // The first few combinations as examples; every one is in its pattern's result.
        let mut examples: Vec<String> = accepted
            .iter()
            .take(3)
            .map(|&i| {
                let p = &results[i].0;
                format!("MAIL FROM:<{}> RCPT TO:<{}>", p.from, p.to)
            })
            .collect();
        if accepted.len() > 3 {
            examples.push(format!("and {} more", accepted.len() - 3));
        }
        let numbers: Vec<String> = accepted.iter().map(|i| (i + 1).to_string()).collect();
        out.finding(&Finding::new(
            RELAY_OPEN,
            format!(
                "{subject} accepted {} of {} relay patterns ({}) from {}: {}",
                accepted.len(),
                results.len(),
                numbers.join(", "),
                client_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "this client".into()),
                examples.join("; ")
            ),
        ));
    }
    if unclear > 0 {
        let list: Vec<String> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.1 == PatternResult::Inconclusive)
            .map(|(i, r)| format!("{}: {}", i + 1, r.2))
            .collect();
        out.finding(&Finding::new(
            RELAY_INCONCLUSIVE,
            format!(
                "{unclear} pattern(s) gave no clear answer: {}",
                list.join("; ")
            ),
        ));
    }
    out.verdict("relay", verdict);
    Ok(out.finish(global))
}

/// One pattern's result line.
fn report_pattern(
    out: &mut CheckOutput,
    n: usize,
    p: &Pattern,
    r: PatternResult,
    text: &str,
    a: &Attempt,
) {
    let from = if p.from.is_empty() {
        "<>".to_owned()
    } else {
        format!("<{}>", p.from)
    };
    out.result(
        "relay",
        &format!("pattern {n}"),
        r.verdict(),
        &format!("MAIL FROM:{from} RCPT TO:<{}> ({})\n{text}", p.to, p.name),
        json!({
            "pattern": n, "name": p.name, "from": p.from, "to": p.to,
            "result": match r {
                PatternResult::Accepted => "accepted",
                PatternResult::Refused => "refused",
                PatternResult::Inconclusive => "inconclusive",
            },
            "mail": a.mail.as_ref().map(reply_json),
            "rcpt": a.rcpt.as_ref().map(|(_, r)| reply_json(r)),
            "explanation": a.why, "error": a.error,
        }),
    );
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// One pattern's session, its transcript printed as it goes.
async fn attempt(
    out: &mut CheckOutput,
    target: &SmtpTarget,
    tls: &TlsClient,
    base: &ClientOptions,
    p: &Pattern,
) -> Attempt {
    let mut client = Client::new(ClientOptions {
        from: p.from.clone(),
        to: vec![p.to.clone()],
        ..base.clone()
    });
    let rep = out.reporter();
    // A new session, a new transcript: start counting its chunks from zero.
    rep.transcript_upto(client.transcript(), 0);
    rep.note(
        now(),
        &format!(
            "pattern \"{}\": connecting to {} port {}",
            p.name, target.host, target.port
        ),
    );
    let mut a = Attempt::default();
    let result = run_smtp_client(target, tls, &mut client, |c, ev| {
        let upto = match &ev {
            DriverEvent::Machine(pos, _) => *pos,
            _ => usize::MAX,
        };
        rep.transcript_upto(c.transcript(), upto);
        match ev {
            DriverEvent::Connected {
                peer,
                local,
                elapsed_us,
                failed_attempts,
            } => {
                rep.connected(now(), peer, local, elapsed_us, &failed_attempts);
                a.peer = Some(peer);
                a.local = Some(local);
            }
            DriverEvent::Machine(_, Event::ReplyReceived { command, reply, .. }) => match command {
                None => a.banner = Some(reply),
                Some("MAIL") => a.mail = Some(reply),
                _ => {}
            },
            DriverEvent::Machine(
                _,
                Event::RecipientAnswered {
                    accepted, reply, ..
                },
            ) => {
                a.rcpt = Some((accepted, reply));
            }
            DriverEvent::Machine(
                _,
                Event::ReplyExplained {
                    command: Some("MAIL" | "RCPT"),
                    explanation,
                },
            ) => {
                a.categories = explanation.categories.clone();
                a.why = Some(explanation.summary.clone());
            }
            DriverEvent::Machine(_, Event::Finished(o)) => a.outcome = Some(o),
            _ => {}
        }
    })
    .await;
    rep.transcript(client.transcript());
    match result {
        Ok(()) => {}
        Err(SessionError::Connect(e)) => a.error = Some(e.to_string()),
        Err(SessionError::ImplicitTls(e)) => a.error = Some(e.to_string()),
    }
    a
}
