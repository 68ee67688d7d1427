//! SMTP smuggling probes (SEC Consult, December 2023; CVE-2023-51764 Postfix, -51765
//! Sendmail, -51766 Exim): does the server take a non-standard end-of-data sequence such as
//! `\n.\n` as the end of the message?
//!
//! Each probe is one transaction whose message carries one lookalike followed by a complete
//! smuggled transaction (`MAIL FROM`, `RCPT TO`, `DATA`, a second message), and then the
//! real `\r\n.\r\n`. All of it goes out in one write, as a relay would pass it on. The
//! machine reads the first reply, then sends EHLO (HELO if the session fell back to it) as a
//! synchronisation point — EHLO also resets the transaction (RFC 5321 §4.1.4), so it stands
//! in for RSET between probes — and counts the replies that arrive before the EHLO's own,
//! recognised by its first line (the same as the session's EHLO reply):
//!
//! - none, and the first reply was 2xx: the whole probe was one message — **safe**;
//! - none, and the first reply refused it (Postfix's `550 5.5.2 bare <LF>`) — **refused**;
//! - some, one of them 2xx or 3xx: the server ended the data at the lookalike and executed
//!   the smuggled commands — **vulnerable** (`smtp.server.smuggling-accepted`);
//! - some, all refusals: it ended the data there but refused what followed — **ended
//!   early** (`smtp.server.end-of-data-variant`);
//! - the server closed the connection (qmail on a bare LF) — **closed**; the variants left
//!   are for a fresh session ([`Client::smuggling_remaining`]).
//!
//! No timing is involved, so a slow content filter cannot make a vulnerable server look
//! safe; the price is that a vulnerable server delivers the smuggled message — to the
//! probe's own recipient, from its own sender, saying what it is.

use super::{Client, Event, State, Txn};
use crate::finding::{Finding, SMTP_SERVER_END_OF_DATA_VARIANT, SMTP_SERVER_SMUGGLING_ACCEPTED};
use crate::smtp::command::Command;
use crate::smtp::reply::Reply;
use crate::transcript::{Direction, Timestamp};

/// An end-of-data lookalike (the real one is `\r\n.\r\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmugglingVariant {
    /// `\n.\n`: bare LFs around the dot.
    LfDotLf,
    /// `\r.\r`: bare CRs around the dot.
    CrDotCr,
    /// `\n.\r\n`: a bare LF before the dot.
    LfDotCrLf,
    /// `\r\n.\n`: a bare LF after the dot.
    CrLfDotLf,
    /// `\r.\r\n`: a bare CR before the dot.
    CrDotCrLf,
    /// `\n.\r`: a bare LF before and a bare CR after the dot.
    LfDotCr,
    /// `\r\n.\r`: a bare CR after the dot.
    CrLfDotCr,
    /// `\r\n\0.\r\n`: a NUL before the dot (servers that drop NULs see `\r\n.\r\n`).
    CrLfNulDotCrLf,
}

impl SmugglingVariant {
    /// Every variant, in probing order.
    pub const ALL: [SmugglingVariant; 8] = [
        SmugglingVariant::LfDotLf,
        SmugglingVariant::CrDotCr,
        SmugglingVariant::LfDotCrLf,
        SmugglingVariant::CrLfDotLf,
        SmugglingVariant::CrDotCrLf,
        SmugglingVariant::LfDotCr,
        SmugglingVariant::CrLfDotCr,
        SmugglingVariant::CrLfNulDotCrLf,
    ];

    /// The bytes.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            SmugglingVariant::LfDotLf => b"\n.\n",
            SmugglingVariant::CrDotCr => b"\r.\r",
            SmugglingVariant::LfDotCrLf => b"\n.\r\n",
            SmugglingVariant::CrLfDotLf => b"\r\n.\n",
            SmugglingVariant::CrDotCrLf => b"\r.\r\n",
            SmugglingVariant::LfDotCr => b"\n.\r",
            SmugglingVariant::CrLfDotCr => b"\r\n.\r",
            SmugglingVariant::CrLfNulDotCrLf => b"\r\n\0.\r\n",
        }
    }

    /// The bytes in the escape grammar, e.g. `\n.\n`: its name in output.
    pub fn name(self) -> &'static str {
        match self {
            SmugglingVariant::LfDotLf => "\\n.\\n",
            SmugglingVariant::CrDotCr => "\\r.\\r",
            SmugglingVariant::LfDotCrLf => "\\n.\\r\\n",
            SmugglingVariant::CrLfDotLf => "\\r\\n.\\n",
            SmugglingVariant::CrDotCrLf => "\\r.\\r\\n",
            SmugglingVariant::LfDotCr => "\\n.\\r",
            SmugglingVariant::CrLfDotCr => "\\r\\n.\\r",
            SmugglingVariant::CrLfNulDotCrLf => "\\r\\n\\0.\\r\\n",
        }
    }

    /// Parses a name in the escape grammar (`\n.\n`) or as words (`lf-dot-lf`,
    /// `crlf-nul-dot-crlf`).
    pub fn from_name(s: &str) -> Option<Self> {
        let words = |v: SmugglingVariant| {
            v.name()
                .replace("\\r\\n", "crlf-")
                .replace("\\r", "cr-")
                .replace("\\n", "lf-")
                .replace("\\0", "nul-")
                .replace('.', "dot-")
                .trim_end_matches('-')
                .to_string()
        };
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s || words(*v) == lower)
    }
}

/// How the server treated one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmugglingVerdict {
    /// It ended the data at the lookalike and executed the smuggled commands.
    Vulnerable,
    /// It ended the data at the lookalike but refused the commands after it.
    EndedEarly,
    /// It kept the lookalike as message text and accepted the whole as one message.
    Safe,
    /// It refused the message (e.g. a bare LF refused), and nothing after the lookalike ran.
    Refused,
    /// It closed the connection without executing anything after the lookalike.
    Closed,
    /// No conclusion (the synchronising reply never came).
    Inconclusive,
}

impl SmugglingVerdict {
    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            SmugglingVerdict::Vulnerable => "vulnerable",
            SmugglingVerdict::EndedEarly => "ended-early",
            SmugglingVerdict::Safe => "safe",
            SmugglingVerdict::Refused => "refused",
            SmugglingVerdict::Closed => "closed",
            SmugglingVerdict::Inconclusive => "inconclusive",
        }
    }

    /// Whether the server needs fixing (vulnerable or ended early).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            SmugglingVerdict::Vulnerable | SmugglingVerdict::EndedEarly
        )
    }
}

/// How a probe's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The synchronising EHLO was answered.
    Synced,
    /// The server closed the connection.
    Closed,
    /// The step timeout passed.
    TimedOut,
}

/// The verdict from the first reply after the probe's data and the replies before the
/// synchronising EHLO's.
pub(super) fn verdict(first: Option<&Reply>, extras: &[Reply], ending: Ending) -> SmugglingVerdict {
    if extras.iter().any(|r| matches!(r.class(), 2 | 3)) {
        return SmugglingVerdict::Vulnerable;
    }
    if !extras.is_empty() {
        return SmugglingVerdict::EndedEarly;
    }
    match (first, ending) {
        (_, Ending::TimedOut) => SmugglingVerdict::Inconclusive,
        (None, _) => SmugglingVerdict::Closed,
        (Some(r), _) if r.is_positive() => SmugglingVerdict::Safe,
        (Some(_), _) => SmugglingVerdict::Refused,
    }
}

/// One probe in flight.
#[derive(Debug)]
pub(crate) struct ProbeRun {
    variant: SmugglingVariant,
    number: usize,
    /// The message data, terminator included.
    pub(super) content: Vec<u8>,
    /// Where the lookalike starts in `content`.
    variant_at: usize,
    variant_offset: Option<u64>,
    first: Option<Reply>,
    extras: Vec<Reply>,
}

impl ProbeRun {
    /// RFC 1870 size: the data without the terminating `.\r\n` (nothing is stuffed).
    pub(super) fn message_size(&self) -> usize {
        self.content.len().saturating_sub(3)
    }
}

/// `Thu, 01 Jan 1970 00:00:00 +0000` for microseconds since the Unix epoch (the drivers'
/// clock), so the probe messages carry the Date RFC 5322 requires.
pub(super) fn rfc5322_date(now: Timestamp) -> String {
    let secs = now.0 / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days.rem_euclid(7)) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A probe message: the carrier's header and text, the lookalike, the smuggled transaction
/// and its message, the real terminator. Returns the bytes and where the lookalike starts.
pub(super) fn probe_message(
    variant: SmugglingVariant,
    number: usize,
    total: usize,
    from: &str,
    to: &[String],
    helo: &str,
    now: Timestamp,
) -> (Vec<u8>, usize) {
    let date = rfc5322_date(now);
    let rcpts: Vec<String> = to.iter().map(|t| format!("<{t}>")).collect();
    let header = |subject: &str, tag: &str| {
        format!(
            "From: <{from}>\r\nTo: {}\r\nSubject: mailscope SMTP smuggling probe {number}/{total}: {subject}\r\nDate: {date}\r\nMessage-ID: <mailscope.{tag}.{number}.{}@{helo}>\r\n\r\n",
            rcpts.join(", "),
            now.0
        )
    };
    let name = variant.name();
    let mut out = header(&format!("end-of-data lookalike {name}"), "probe").into_bytes();
    out.extend_from_slice(
        format!(
            "This is mailscope's SMTP smuggling probe {number} of {total}. The end-of-data lookalike {name} follows; a server that is not vulnerable keeps everything after it, the smuggled transaction included, in this one message."
        )
        .as_bytes(),
    );
    let at = out.len();
    out.extend_from_slice(variant.bytes());
    out.extend_from_slice(format!("MAIL FROM:<{from}>\r\n").as_bytes());
    for t in to {
        out.extend_from_slice(format!("RCPT TO:<{t}>\r\n").as_bytes());
    }
    out.extend_from_slice(b"DATA\r\n");
    out.extend_from_slice(header(&format!("SMUGGLED message ({name})"), "smuggled").as_bytes());
    out.extend_from_slice(
        format!(
            "If this arrived as a message of its own, the server is vulnerable to SMTP smuggling with the end-of-data sequence {name}.\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(b".\r\n");
    (out, at)
}

impl Client {
    /// Starts the probe for the first variant not concluded yet.
    pub(super) fn begin_probe(&mut self) {
        let Some(&variant) = self.probe_queue.front() else {
            return;
        };
        let number = self.probe_total - self.probe_queue.len() + 1;
        let (content, variant_at) = probe_message(
            variant,
            number,
            self.probe_total,
            &self.opts.from,
            &self.opts.to,
            &self.opts.helo_name,
            self.now,
        );
        self.txn = Txn::for_probe(ProbeRun {
            variant,
            number,
            content,
            variant_at,
            variant_offset: None,
            first: None,
            extras: Vec::new(),
        });
        self.advance();
    }

    /// After DATA's 354: the probe message, in one write.
    pub(super) fn send_probe_content(&mut self) {
        let Some(p) = self.txn.probe.as_ref() else {
            return;
        };
        let (content, at, number, name) =
            (p.content.clone(), p.variant_at, p.number, p.variant.name());
        self.note(&format!(
            "smuggling probe {number}/{}: a message with {name} at data octet {at}, a smuggled transaction after it, then the real \\r\\n.\\r\\n",
            self.probe_total
        ));
        let offset = self.send_bytes(&content);
        if let Some(p) = self.txn.probe.as_mut() {
            p.variant_offset = Some(offset + at as u64);
        }
        self.push_event(Event::DataSent {
            offset,
            content_len: content.len() - 3,
            raw: true,
            terminator: ".\\r\\n",
        });
        self.expect(State::ExpectProbeEnd);
    }

    /// The first reply after the probe data; then the synchronising EHLO (or HELO).
    pub(super) fn on_probe_end(&mut self, reply: Reply) {
        if let Some(p) = self.txn.probe.as_mut() {
            p.first = Some(reply);
        }
        let verb = self.hello_verb;
        let name = self.opts.helo_name.clone();
        let cmd = if verb == "HELO" {
            Command::Helo(name)
        } else {
            Command::Ehlo(name)
        };
        let verb = cmd.verb();
        self.send(cmd, State::ExpectProbeSync { verb });
    }

    /// A reply while waiting for the synchronising EHLO's: its own ends the probe; any other
    /// answers something smuggled.
    pub(super) fn on_probe_sync(&mut self, verb: &'static str, reply: Reply) {
        let first_line = reply.lines.first().map(|l| l.text.as_slice());
        if reply.code == 250 && first_line == Some(self.hello_first_line.as_slice()) {
            self.conclude_probe(Ending::Synced);
            if self.finished {
                return;
            }
            if self.probe_queue.is_empty() {
                self.quit(super::Outcome::Completed);
            } else {
                self.begin_probe();
            }
            return;
        }
        if let Some(p) = self.txn.probe.as_mut() {
            p.extras.push(reply);
        }
        self.expect(State::ExpectProbeSync { verb });
    }

    /// Records the verdict for the probe in flight (if any) and drops it from the queue.
    pub(super) fn conclude_probe(&mut self, ending: Ending) {
        let Some(p) = self.txn.probe.take() else {
            return;
        };
        self.probe_queue.pop_front();
        let v = verdict(p.first.as_ref(), &p.extras, ending);
        let codes: Vec<String> = p
            .first
            .iter()
            .chain(p.extras.iter())
            .map(|r| r.code.to_string())
            .collect();
        let replies_text = if codes.is_empty() {
            "no reply".to_string()
        } else {
            format!("replies {}", codes.join(", "))
        };
        let name = p.variant.name();
        let at = |f: Finding| match p.variant_offset {
            Some(o) => f.at(Direction::ClientToServer, o),
            None => f,
        };
        match v {
            SmugglingVerdict::Vulnerable => self.raise(at(Finding::new(
                SMTP_SERVER_SMUGGLING_ACCEPTED,
                format!(
                    "{name}: the server ended the message there and executed the smuggled commands ({replies_text})"
                ),
            ))),
            SmugglingVerdict::EndedEarly => self.raise(at(Finding::new(
                SMTP_SERVER_END_OF_DATA_VARIANT,
                format!(
                    "{name}: the server ended the message there and refused the smuggled commands ({replies_text})"
                ),
            ))),
            _ => {}
        }
        let what = match (v, ending) {
            (SmugglingVerdict::Vulnerable, _) => {
                "VULNERABLE: it ended the data at the lookalike and ran the smuggled commands"
            }
            (SmugglingVerdict::EndedEarly, _) => {
                "it ended the data at the lookalike, but refused the smuggled commands"
            }
            (SmugglingVerdict::Safe, Ending::Closed) => {
                "one message accepted, then the server closed the connection"
            }
            (SmugglingVerdict::Safe, _) => "safe: the whole probe was accepted as one message",
            (SmugglingVerdict::Refused, Ending::Closed) => {
                "refused, then the server closed the connection"
            }
            (SmugglingVerdict::Refused, _) => {
                "safe: the message was refused and nothing after the lookalike ran"
            }
            (SmugglingVerdict::Closed, _) => "the server closed the connection before answering",
            (SmugglingVerdict::Inconclusive, _) => {
                "inconclusive: the reply to the synchronising EHLO never came"
            }
        };
        self.note(&format!(
            "smuggling probe {}/{} ({name}): {what} ({replies_text})",
            p.number, self.probe_total
        ));
        let replies = p.first.into_iter().chain(p.extras).collect();
        self.push_event(Event::SmugglingProbeResult {
            variant: p.variant,
            verdict: v,
            replies,
        });
        if ending != Ending::Synced && !self.probe_queue.is_empty() {
            self.note(&format!(
                "{} smuggling variant(s) left: run them in a fresh session",
                self.probe_queue.len()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::{Decoded, ReplyLimits, decode_reply};

    fn reply(text: &str) -> Reply {
        match decode_reply(text.as_bytes(), &ReplyLimits::default()) {
            Ok(Decoded::Complete { value, .. }) => value.reply,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn variants_round_trip_their_names() {
        for v in SmugglingVariant::ALL {
            assert_eq!(SmugglingVariant::from_name(v.name()), Some(v));
            assert_eq!(crate::escape::escape(v.bytes()), v.name());
        }
        assert_eq!(
            SmugglingVariant::from_name("lf-dot-lf"),
            Some(SmugglingVariant::LfDotLf)
        );
        assert_eq!(
            SmugglingVariant::from_name("CRLF-NUL-DOT-CRLF"),
            Some(SmugglingVariant::CrLfNulDotCrLf)
        );
        assert_eq!(
            SmugglingVariant::from_name("crlf-dot-cr"),
            Some(SmugglingVariant::CrLfDotCr)
        );
        assert_eq!(SmugglingVariant::from_name("\\r\\n.\\r\\n"), None);
    }

    #[test]
    fn verdicts_follow_the_replies() {
        let ok = reply("250 2.0.0 Ok: queued as A\r\n");
        let bad = reply("550 5.5.2 bare <LF> received\r\n");
        let go = reply("354 go ahead\r\n");
        let bad_seq = reply("503 5.5.1 bad sequence\r\n");
        use Ending::{Closed as ClosedEnd, Synced, TimedOut};
        use SmugglingVerdict::*;
        assert_eq!(verdict(Some(&ok), &[], Synced), Safe);
        assert_eq!(verdict(Some(&bad), &[], Synced), Refused);
        assert_eq!(verdict(Some(&bad), &[], ClosedEnd), Refused);
        assert_eq!(verdict(None, &[], ClosedEnd), Closed);
        assert_eq!(verdict(None, &[], TimedOut), Inconclusive);
        assert_eq!(
            verdict(Some(&ok), &[ok.clone(), ok.clone(), go, ok.clone()], Synced),
            Vulnerable
        );
        assert_eq!(
            verdict(Some(&bad), std::slice::from_ref(&ok), ClosedEnd),
            Vulnerable
        );
        assert_eq!(
            verdict(Some(&ok), &[bad_seq.clone(), bad_seq], Synced),
            EndedEarly
        );
    }

    #[test]
    fn dates_follow_rfc_5322() {
        assert_eq!(
            rfc5322_date(Timestamp(0)),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
        // 2023-12-18 09:30:05 UTC (the day SEC Consult published).
        assert_eq!(
            rfc5322_date(Timestamp(1_702_891_805_000_000)),
            "Mon, 18 Dec 2023 09:30:05 +0000"
        );
        assert_eq!(
            rfc5322_date(Timestamp(951_782_400_000_000)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }

    #[test]
    fn a_probe_message_carries_one_lookalike_and_a_whole_smuggled_transaction() {
        let to = vec!["bob@example.test".to_string()];
        let (m, at) = probe_message(
            SmugglingVariant::CrLfDotLf,
            2,
            8,
            "alice@example.test",
            &to,
            "client.example.test",
            Timestamp(0),
        );
        assert!(m[at..].starts_with(b"\r\n.\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: <alice@example.test>\r\n"));
        assert!(m.ends_with(b"SMTP smuggling with the end-of-data sequence \\r\\n.\\n.\r\n.\r\n"));
        // Exactly one real end of data, at the very end; the header says what it is.
        let real = m.windows(5).filter(|w| w == b"\r\n.\r\n").count();
        assert_eq!(real, 1);
        assert!(m.starts_with(b"From: <alice@example.test>\r\nTo: <bob@example.test>\r\nSubject: mailscope SMTP smuggling probe 2/8: end-of-data lookalike \\r\\n.\\n\r\nDate: Thu, 01 Jan 1970"));
        // Nothing before the lookalike ends a line: it is not mistaken for another sequence.
        assert!(!m[..at].ends_with(b"\r") && !m[..at].ends_with(b"\n"));
    }
}
