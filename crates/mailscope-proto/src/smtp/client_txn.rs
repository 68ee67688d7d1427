//! The mail transaction: MAIL, RCPT…, then DATA and the content or the BDAT chunks, in
//! lock-step or pipelined (RFC 2920), with LMTP's per-recipient replies (RFC 2033 §4.2).
//!
//! Replies only record what they say; `advance` decides what comes next, and runs whenever
//! no reply is outstanding — after each reply in lock-step, after the whole group when
//! pipelining — so both modes take the same decisions in the same order.

use super::params::{self, MessageFacts, Plan};
use super::probe::ProbeRun;
use super::{Client, Event, FailedStep, HelloKind, Outcome, Stage, State};
use crate::finding::{Finding, SMTP_DATA_UNSTUFFED_DOT};
use crate::smtp::command::Command;
use crate::smtp::data::{Terminator, lint_data};
use crate::smtp::reply::Reply;
use crate::transcript::Direction;

/// The BDAT content and how it was cut.
#[derive(Debug)]
pub(super) struct Chunks {
    content: Vec<u8>,
    size: usize,
    count: usize,
    sent: usize,
    /// Stream offset of each sent chunk's first data byte.
    offsets: Vec<u64>,
}

impl Chunks {
    fn range(&self, k: usize) -> std::ops::Range<usize> {
        let start = (k * self.size).min(self.content.len());
        start..(start + self.size).min(self.content.len())
    }
}

/// What one transaction has sent and been told so far.
#[derive(Debug, Default)]
pub(super) struct Txn {
    pub(super) started: bool,
    pub(super) plan: Option<Plan>,
    /// Whether there is a message to send (the option's, or a probe's).
    has_message: bool,
    mail: Option<Reply>,
    mail_stage: bool,
    rcpt_sent: usize,
    rcpt_answered: usize,
    /// Indices (into `ClientOptions::to`) of the accepted recipients, in RCPT order.
    accepted: Vec<usize>,
    last_rcpt: Option<Reply>,
    rcpt_stage: bool,
    data_sent: bool,
    data_reply: Option<Reply>,
    data_stage: bool,
    content_sent: bool,
    chunks: Option<Chunks>,
    chunk_replies: Vec<Reply>,
    final_replies: Vec<Reply>,
    /// The smuggling probe this transaction carries, if it is one.
    pub(super) probe: Option<ProbeRun>,
}

impl Txn {
    /// A transaction that carries a smuggling probe.
    pub(super) fn for_probe(probe: ProbeRun) -> Self {
        Self {
            probe: Some(probe),
            ..Self::default()
        }
    }

    /// Whether the message goes with BDAT.
    pub(super) fn bdat(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.bdat)
    }

    /// Whether BODY=8BITMIME or BINARYMIME was declared.
    pub(super) fn eight_bit_declared(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.eight_bit_declared)
    }
}

impl Client {
    /// A reply in the transaction: record it, then go on if nothing else is due.
    pub(super) fn on_transaction_reply(&mut self, state: State, reply: Reply) {
        match state {
            State::ExpectMailReply => self.txn.mail = Some(reply),
            State::ExpectRcptReply { index } => {
                let accepted = reply.is_positive();
                let to = self.opts.to.get(index).cloned().unwrap_or_default();
                self.push_event(Event::RecipientAnswered {
                    to,
                    accepted,
                    reply: reply.clone(),
                });
                if accepted {
                    self.txn.accepted.push(index);
                }
                self.txn.rcpt_answered += 1;
                self.txn.last_rcpt = Some(reply);
            }
            State::ExpectDataReply => {
                let mail_refused = self.txn.mail.as_ref().is_some_and(|m| !m.is_positive());
                let no_rcpt = self.txn.accepted.is_empty();
                let doomed = reply.code == 354 && (mail_refused || no_rcpt);
                self.txn.data_reply = Some(reply);
                if doomed {
                    // RFC 2920 §3.1: a pipelined DATA the server accepted although nothing
                    // valid preceded it still needs its end: an empty message.
                    self.note("DATA was answered 354 although MAIL or every RCPT was refused: ending it with a lone dot (RFC 2920 §3.1)");
                    self.send_line(
                        ".",
                        b".\r\n".to_vec(),
                        Vec::new(),
                        State::ExpectDoomedDotReply,
                    );
                    return;
                }
            }
            State::ExpectDoomedDotReply => {}
            State::ExpectDataEndReply => self.txn.final_replies.push(reply),
            State::ExpectLmtpReply { index } => {
                let to = self.opts.to.get(index).cloned().unwrap_or_default();
                self.push_event(Event::RecipientDelivered {
                    to,
                    accepted: reply.is_positive(),
                    reply: reply.clone(),
                });
                self.txn.final_replies.push(reply);
            }
            State::ExpectBdatReply { last: true, .. } => self.txn.final_replies.push(reply),
            State::ExpectBdatReply { last: false, .. } => self.txn.chunk_replies.push(reply),
            _ => {}
        }
        self.advance();
    }

    /// The next step of the transaction, if no reply is due.
    pub(super) fn advance(&mut self) {
        if self.finished || self.outstanding() {
            return;
        }
        if !self.txn.started {
            self.start_txn();
            return;
        }
        let Some(mail) = self.txn.mail.clone() else {
            return;
        };
        if !mail.is_positive() {
            self.fail(FailedStep::Mail, "MAIL FROM was refused", mail);
            return;
        }
        let probe = self.txn.probe.is_some();
        if !self.txn.mail_stage {
            self.txn.mail_stage = true;
            if !probe {
                self.at_stage(&[Stage::Mail], Client::advance);
                return;
            }
        }
        let n = self.opts.to.len();
        if n == 0 {
            self.fail_without_reply(FailedStep::Rcpt, "no recipient given (--to)");
            return;
        }
        if self.txn.rcpt_sent < n {
            self.send_rcpt(self.txn.rcpt_sent);
            return;
        }
        if self.txn.rcpt_answered < n {
            return;
        }
        if self.txn.accepted.is_empty() {
            if let Some(r) = self.txn.last_rcpt.clone() {
                self.fail(FailedStep::Rcpt, "no recipient was accepted", r);
            }
            return;
        }
        if !self.txn.rcpt_stage {
            self.txn.rcpt_stage = true;
            if !probe {
                self.at_stage(&[Stage::Rcpt], Client::advance);
                return;
            }
        }
        if !self.txn.has_message {
            self.note("no message data given: stopping after RCPT");
            self.quit(Outcome::StoppedAfter(Stage::Rcpt));
            return;
        }
        if self.txn.bdat() {
            self.advance_bdat();
        } else {
            self.advance_data();
        }
    }

    /// Plans the parameters, checks the line lengths, sends MAIL — and, pipelining, the
    /// rest of the group.
    fn start_txn(&mut self) {
        let caps = self.caps.clone().unwrap_or_default();
        let probe = self.txn.probe.is_some();
        let facts = match &self.txn.probe {
            Some(p) => Some(MessageFacts::of(&p.content, p.message_size())),
            None => self
                .opts
                .data
                .as_ref()
                .map(|d| MessageFacts::of(d.content(), d.message_size())),
        };
        let plan = match params::plan(&self.opts, &caps, self.tls, facts, probe) {
            Ok(p) => p,
            Err(r) => {
                self.fail_without_reply(r.step, &r.reason);
                return;
            }
        };
        for n in &plan.notes {
            self.note(n);
        }
        for (kind, detail) in &plan.findings {
            self.raise(Finding::new(kind, detail.clone()));
        }
        // The envelope lines themselves (extension parameters may add to RFC 5321's 512):
        // all checked before anything of the transaction is sent.
        let core = |verb: &str, addr: &str| format!("{verb}:<{addr}>\r\n").len();
        if !self.line_fits("MAIL", core("MAIL FROM", &self.opts.from), FailedStep::Mail) {
            return;
        }
        for to in self.opts.to.clone() {
            if !self.line_fits("RCPT", core("RCPT TO", &to), FailedStep::Rcpt) {
                return;
            }
        }
        let mail_params = plan.mail_params.clone();
        self.txn.started = true;
        self.txn.has_message = facts.is_some();
        self.txn.plan = Some(plan);
        self.send(
            Command::Mail {
                from: self.opts.from.clone(),
                params: mail_params,
            },
            State::ExpectMailReply,
        );
        if !self.opts.pipeline || !self.decide_pipelining() {
            return;
        }
        let n = self.opts.to.len();
        let mut group = String::from("MAIL");
        let pauses = |c: &Client, s: Stage| !probe && c.pauses_at(s);
        if n > 0 && !pauses(self, Stage::Mail) {
            for i in 0..n {
                self.send_rcpt(i);
            }
            group.push_str(&format!(", {n} RCPT"));
            if self.txn.has_message && !pauses(self, Stage::Rcpt) {
                if self.txn.bdat() {
                    self.prepare_chunks();
                    let count = self.txn.chunks.as_ref().map_or(0, |c| c.count);
                    // LMTP: the replies to BDAT LAST are one per accepted recipient, which
                    // are not known yet; the last chunk waits for them.
                    let hold_last = pauses(self, Stage::Data) || self.opts.hello == HelloKind::Lhlo;
                    let upto = if hold_last { count - 1 } else { count };
                    for k in 0..upto {
                        self.send_chunk(k);
                    }
                    if upto > 0 {
                        group.push_str(&format!(", {upto} BDAT"));
                    }
                } else {
                    self.txn.data_sent = true;
                    self.send(Command::Data, State::ExpectDataReply);
                    group.push_str(", DATA");
                }
            }
        }
        self.note(&format!("pipelining (RFC 2920): {group} sent in one go"));
    }

    /// Pipelining or not: decided at the first transaction, from the offer and `lax`.
    fn decide_pipelining(&mut self) -> bool {
        if let Some(p) = self.pipelining {
            return p;
        }
        let offered = self.caps.as_ref().is_some_and(|c| c.has("PIPELINING"));
        let p = if offered {
            true
        } else if self.opts.lax {
            self.raise(Finding::new(
                crate::finding::SMTP_CLIENT_LAX_UNADVERTISED,
                "commands pipelined although the server does not offer PIPELINING",
            ));
            true
        } else {
            self.note("the server does not offer PIPELINING: sending one command at a time");
            false
        };
        self.pipelining = Some(p);
        p
    }

    fn send_rcpt(&mut self, index: usize) {
        let to = self.opts.to.get(index).cloned().unwrap_or_default();
        let params = self
            .txn
            .plan
            .as_ref()
            .and_then(|p| p.rcpt_params.get(index).cloned())
            .unwrap_or_default();
        self.txn.rcpt_sent = index + 1;
        self.send(
            Command::Rcpt { to, params },
            State::ExpectRcptReply { index },
        );
    }

    fn advance_data(&mut self) {
        let probe = self.txn.probe.is_some();
        if !self.txn.data_sent {
            self.txn.data_sent = true;
            self.send(Command::Data, State::ExpectDataReply);
            return;
        }
        let Some(reply) = self.txn.data_reply.clone() else {
            return;
        };
        if reply.code != 354 {
            self.fail(FailedStep::Data, "DATA was refused", reply);
            return;
        }
        if !self.txn.data_stage {
            self.txn.data_stage = true;
            if !probe {
                self.at_stage(&[Stage::Data], Client::advance);
                return;
            }
        }
        if !self.txn.content_sent {
            self.txn.content_sent = true;
            if probe {
                self.send_probe_content();
            } else {
                self.send_data();
            }
            return;
        }
        self.finish_message();
    }

    /// The content after 354, then the replies it needs: one, or one per accepted
    /// recipient under LMTP.
    fn send_data(&mut self) {
        let Some(data) = self.opts.data.take() else {
            self.fail_without_reply(FailedStep::Data, "no message data");
            return;
        };
        let offset = self.send_bytes(&data.bytes);
        let terminator = match data.terminator {
            Terminator::CrLfDotCrLf => "\\r\\n.\\r\\n",
            Terminator::DotCrLf => ".\\r\\n",
        };
        if data.raw {
            self.note(&format!(
                "raw DATA: {} bytes sent unchanged, then {terminator} ({})",
                data.content_len,
                if terminator == ".\\r\\n" {
                    "the content ended in CRLF"
                } else {
                    "the content did not end in CRLF"
                }
            ));
        }
        self.lint_content(data.content(), offset);
        self.push_event(Event::DataSent {
            offset,
            content_len: data.content_len,
            raw: data.raw,
            terminator,
        });
        self.expect_final_replies(State::ExpectDataEndReply);
    }

    /// After the end of the message: `single` for SMTP, or LMTP's reply per recipient.
    fn expect_final_replies(&mut self, single: State) {
        if self.opts.hello == HelloKind::Lhlo {
            for index in self.txn.accepted.clone() {
                self.expect(State::ExpectLmtpReply { index });
            }
        } else {
            self.expect(single);
        }
    }

    fn advance_bdat(&mut self) {
        if self.txn.chunks.is_none() {
            self.prepare_chunks();
        }
        let count = self.txn.chunks.as_ref().map_or(0, |c| c.count);
        if let Some((k, r)) = self
            .txn
            .chunk_replies
            .iter()
            .enumerate()
            .find(|(_, r)| !r.is_positive())
        {
            let r = r.clone();
            self.fail(
                FailedStep::Data,
                &format!("BDAT chunk {} of {count} was refused", k + 1),
                r,
            );
            return;
        }
        let sent = self.txn.chunks.as_ref().map_or(0, |c| c.sent);
        if sent + 1 < count {
            self.send_chunk(sent);
            return;
        }
        if !self.txn.data_stage {
            self.txn.data_stage = true;
            self.at_stage(&[Stage::Data], Client::advance);
            return;
        }
        if sent < count {
            self.send_chunk(count - 1);
            return;
        }
        self.finish_message();
    }

    /// Takes the message for BDAT: without dot-stuffing (a raw one exactly as given), cut
    /// into `chunk_size` pieces (one empty `BDAT 0 LAST` for an empty message).
    fn prepare_chunks(&mut self) {
        if self.txn.chunks.is_some() {
            return;
        }
        let content = self
            .opts
            .data
            .take()
            .map(|d| d.unstuffed())
            .unwrap_or_default();
        let size = self.opts.chunk_size.max(1);
        let count = content.len().div_ceil(size).max(1);
        self.txn.chunks = Some(Chunks {
            content,
            size,
            count,
            sent: 0,
            offsets: Vec::new(),
        });
    }

    fn send_chunk(&mut self, k: usize) {
        let Some(chunks) = self.txn.chunks.as_ref() else {
            return;
        };
        let range = chunks.range(k);
        let last = k + 1 == chunks.count;
        let bytes = chunks.content[range.clone()].to_vec();
        let line = Command::Bdat {
            size: range.len(),
            last,
        }
        .to_bytes();
        let lmtp_last = last && self.opts.hello == HelloKind::Lhlo;
        if lmtp_last {
            let offset =
                self.transcript
                    .record(Direction::ClientToServer, self.now, self.tls, &line);
            self.outbuf.extend_from_slice(&line);
            self.push_event(Event::CommandSent {
                command: "BDAT",
                offset,
            });
            self.expect_final_replies(State::ExpectBdatReply { chunk: k, last });
        } else {
            self.send_line(
                "BDAT",
                line,
                Vec::new(),
                State::ExpectBdatReply { chunk: k, last },
            );
        }
        let offset = self.send_bytes(&bytes);
        self.push_event(Event::ChunkSent {
            offset,
            len: bytes.len(),
            last,
        });
        if let Some(c) = self.txn.chunks.as_mut() {
            c.sent = k + 1;
            c.offsets.push(offset);
        }
        if last {
            self.lint_chunks();
        }
    }

    /// The DATA lints over the whole BDAT content, offsets mapped into the chunks (a CRLF
    /// split between two chunks is still a CRLF). No dot-stuffing in BDAT: a leading dot is
    /// just a dot.
    fn lint_chunks(&mut self) {
        let Some(c) = self.txn.chunks.as_ref() else {
            return;
        };
        let findings = lint_data(
            &c.content,
            0,
            Direction::ClientToServer,
            self.txn.eight_bit_declared(),
        );
        let (size, offsets) = (c.size, c.offsets.clone());
        for mut f in findings {
            if f.kind == SMTP_DATA_UNSTUFFED_DOT {
                continue;
            }
            if let Some(i) = f.offset {
                let i = i as usize;
                f.offset = offsets.get(i / size).map(|o| o + (i % size) as u64);
            }
            self.raise(f);
        }
    }

    /// The replies to the end of the message are in: success (any recipient, for LMTP) or
    /// the failure at the dot.
    fn finish_message(&mut self) {
        let replies = std::mem::take(&mut self.txn.final_replies);
        if self.opts.hello == HelloKind::Lhlo {
            let n = replies.len();
            let ok = replies.iter().filter(|r| r.is_positive()).count();
            if ok == 0 {
                match replies.last() {
                    Some(r) => self.fail(
                        FailedStep::Dot,
                        "every recipient was refused after the final dot",
                        r.clone(),
                    ),
                    None => {
                        self.fail_without_reply(FailedStep::Dot, "no reply after the final dot")
                    }
                }
                return;
            }
            if ok < n {
                self.note(&format!(
                    "{} of {n} recipients refused after the final dot",
                    n - ok
                ));
            }
        } else {
            let Some(r) = replies.into_iter().next() else {
                return;
            };
            if !r.is_positive() {
                let why = if self.txn.bdat() {
                    "the message was refused at BDAT LAST"
                } else {
                    "the message was refused after the final dot"
                };
                self.fail(FailedStep::Dot, why, r);
                return;
            }
        }
        self.at_stage(&[Stage::Dot], |c| c.quit(Outcome::Completed));
    }
}
