//! Faults on purpose: scenario files and the smtp-sink style flags (`--reject-at`, `-f`, ...)
//! for `mailscope sink`, turned into one ordered list of rules that the server machine
//! consults before every reply (its [`ReplyPolicy`] hook). The first rule that matches a
//! reply decides it; every fault applied becomes a note in the session's transcript.
//!
//! The core has no randomness and no clock of its own: probabilities are drawn here from a
//! seeded splitmix64 generator (one per sink, shared by its connections, so a run with the
//! same seed and the same client behaviour makes the same choices), and times come from the
//! machine ([`ReplyContext::now`]). The schema is documented in `docs/scenarios.md`.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mailscope_proto::Timestamp;
use mailscope_proto::smtp::reply::EnhancedCode;
use mailscope_proto::smtp::server::{
    ReplyAction, ReplyContext, ReplyFault, ReplyPolicy, ReplyStage, ServerReply,
};
use serde::Deserialize;

/// Longest delay a rule may ask for (an hour): anything longer is a typo, and the client
/// would have given up long before.
const MAX_DELAY_MS: u64 = 3_600_000;

// ------------------------------------------------------------------------------ the model

/// A validated list of rules.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// What the file says it is for.
    pub description: Option<String>,
    /// The file's `seed`, if any.
    pub seed: Option<u64>,
    /// The rules, in the order they are tried.
    pub rules: Vec<Rule>,
}

/// One rule: conditions, then what to do.
#[derive(Debug, Clone)]
pub struct Rule {
    /// How notes and `--check-scenario` name it: `rule 2 "greylist"`, `--defer-at rcpt`.
    pub label: String,
    /// The stages it applies to; `None`: any.
    pub stages: Option<Vec<ReplyStage>>,
    /// The transaction's sender must match (at MAIL and later in the transaction).
    pub sender: Option<Glob>,
    /// A recipient must match: the one being decided at RCPT (and at the end of data in
    /// LMTP), any accepted one at DATA, BDAT and the end of data.
    pub recipient: Option<Glob>,
    /// Only on these connections (1 is the first the sink accepted).
    pub connection: Option<Count>,
    /// Only for these messages of a session (1 is the first transaction).
    pub message: Option<Count>,
    /// Only the n-th time the stage is reached in a session.
    pub occurrence: Option<Count>,
    /// Applies with this probability (drawn only when everything else matched).
    pub probability: Option<f64>,
    /// Applies at most this many times in all (across connections).
    pub times: Option<u64>,
    /// What to do.
    pub action: Action,
    /// Delay before the reply.
    pub delay_ms: u64,
    /// smtp-sink's `-W` odds (1-99): the delay is `delay_ms` times the number of dice rolls
    /// (0-99) in a row that come out below the odds.
    pub delay_odds: Option<u8>,
    /// Read the client at most this many bytes per second until the next reply.
    pub throttle: Option<u64>,
}

/// The reply decision of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The machine's own reply (with a delay or throttle around it).
    Pass,
    /// This reply instead (a 421 closes after it).
    Reply(ServerReply),
    /// This reply, then close.
    ReplyAndClose(ServerReply),
    /// Close without a reply.
    Disconnect,
    /// Send 354, then close without a word after this many octets of content.
    DisconnectAfterBytes(u64),
    /// Answer the final dot positively but store nothing.
    AcceptButDrop,
    /// A greylister.
    Greylist(Greylist),
}

/// A greylister: the first attempt of each key is deferred; a retry after `min_wait_ms`
/// passes, and so does every later one.
#[derive(Debug, Clone, PartialEq)]
pub struct Greylist {
    /// What identifies an attempt.
    pub key: Vec<GreyKey>,
    /// How long a client must wait before its retry passes.
    pub min_wait_ms: u64,
    /// The deferral.
    pub reply: ServerReply,
}

/// A part of a greylisting key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreyKey {
    /// The client's IP address.
    Client,
    /// The envelope sender.
    Sender,
    /// The recipient (at RCPT) or all accepted recipients (later).
    Recipient,
}

impl GreyKey {
    fn name(self) -> &'static str {
        match self {
            GreyKey::Client => "client",
            GreyKey::Sender => "sender",
            GreyKey::Recipient => "recipient",
        }
    }
}

/// The default greylisting reply.
pub fn greylist_reply() -> ServerReply {
    ServerReply::new(450, "4.7.1", "Greylisted, try again later")
}

/// A number, a range of numbers (1-based) or multiples: `3`, `"2-5"`, `"3-"`, `"every 3"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// First matching value.
    pub from: u64,
    /// Last matching value (`None`: no end).
    pub to: Option<u64>,
    /// Only multiples of this.
    pub every: Option<u64>,
}

impl Count {
    /// Exactly `n`.
    pub fn one(n: u64) -> Count {
        Count {
            from: n,
            to: Some(n),
            every: None,
        }
    }

    /// Whether `n` is in the range.
    pub fn contains(self, n: u64) -> bool {
        n >= self.from
            && self.to.is_none_or(|t| n <= t)
            && self.every.is_none_or(|e| n.is_multiple_of(e))
    }

    fn parse(s: &str) -> Result<Count, String> {
        let bad =
            || format!("{s:?} is not a number or a range such as \"2-5\", \"3-\" or \"every 3\"");
        let num = |t: &str| t.trim().parse::<u64>().map_err(|_| bad());
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("every") {
            let e = num(rest)?;
            if e == 0 {
                return Err(format!("{s:?}: every 0 matches nothing"));
            }
            return Ok(Count {
                from: e,
                to: None,
                every: Some(e),
            });
        }
        let c = match t.split_once('-') {
            None => Count::one(num(t)?),
            Some((a, b)) if b.trim().is_empty() => Count {
                from: num(a)?,
                to: None,
                every: None,
            },
            Some((a, b)) => Count {
                from: num(a)?,
                to: Some(num(b)?),
                every: None,
            },
        };
        if c.from == 0 {
            return Err(format!("{s:?}: counting starts at 1"));
        }
        if c.to.is_some_and(|t| t < c.from) {
            return Err(format!("{s:?}: the range ends before it starts"));
        }
        Ok(c)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = self.every {
            return write!(f, "every {}", ordinal(e));
        }
        match self.to {
            Some(t) if t == self.from => write!(f, "{}", ordinal(t)),
            Some(t) => write!(f, "{} to {}", ordinal(self.from), ordinal(t)),
            None => write!(f, "{} and later", ordinal(self.from)),
        }
    }
}

fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A case-insensitive pattern with `*` (any run of characters) and `?` (one character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
    text: String,
}

impl Glob {
    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.chars().flat_map(char::to_lowercase).collect(),
            text: pattern.to_string(),
        }
    }

    /// Whether the whole of `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
        let p = &self.pattern;
        // Iterative matching with one backtrack point: linear in practice, no recursion.
        let (mut i, mut j) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            if j < p.len() && (p[j] == '?' || p[j] == s[i]) {
                i += 1;
                j += 1;
            } else if j < p.len() && p[j] == '*' {
                star = Some((j, i));
                j += 1;
            } else if let Some((sj, si)) = star {
                j = sj + 1;
                i = si + 1;
                star = Some((sj, si + 1));
            } else {
                return false;
            }
        }
        p[j..].iter().all(|&c| c == '*')
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str("<> (the null sender)")
        } else {
            write!(f, "{:?}", self.text)
        }
    }
}

// ------------------------------------------------------------------------------ randomness

/// splitmix64 (Steele, Lea and Flood; Vigna's reference constants): small, fast, and good
/// enough to decide whether a fault happens. Not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) for n > 0 (rejection sampling: no modulo bias).
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
}

// ------------------------------------------------------------------------------ parsing

/// A scenario that could not be loaded: the message names the rule and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    description: Option<String>,
    seed: Option<u64>,
    #[serde(default)]
    rule: Vec<toml::Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCount {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReply {
    code: i64,
    enhanced: Option<String>,
    text: Option<String>,
    lines: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawReplyOrFlag {
    Flag(bool),
    Reply(RawReply),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGreylistTable {
    key: Option<Vec<String>>,
    min_wait_ms: Option<u64>,
    reply: Option<RawReply>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGreylist {
    Flag(bool),
    Table(RawGreylistTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    stage: Option<OneOrMany>,
    sender: Option<String>,
    recipient: Option<String>,
    connection: Option<RawCount>,
    message: Option<RawCount>,
    occurrence: Option<RawCount>,
    probability: Option<f64>,
    times: Option<u64>,
    reply: Option<RawReply>,
    reply_and_close: Option<RawReplyOrFlag>,
    disconnect: Option<bool>,
    disconnect_after_bytes: Option<u64>,
    accept_but_drop: Option<bool>,
    greylist: Option<RawGreylist>,
    delay_ms: Option<u64>,
    delay_odds: Option<u64>,
    throttle: Option<u64>,
}

/// Parses a stage name as scenario files and flags write it: every [`ReplyStage`] name,
/// `helo`/`lhlo` (= `ehlo`), `greeting` (= `connect`), `dot` and `.` (= `end-of-data`).
/// `any` and `*` are handled by the caller.
pub fn parse_stage(s: &str) -> Option<ReplyStage> {
    match s.trim().to_ascii_lowercase().as_str() {
        "greeting" | "banner" => Some(ReplyStage::Connect),
        "." | "end_of_data" | "eod" => Some(ReplyStage::EndOfData),
        "mail-from" | "from" => Some(ReplyStage::Mail),
        "rcpt-to" | "to" => Some(ReplyStage::Rcpt),
        other => ReplyStage::from_name(other),
    }
}

fn stage_list_names() -> String {
    let mut names: Vec<&str> = ReplyStage::ALL.iter().map(|s| s.name()).collect();
    names.push("any");
    names.join(", ")
}

/// Stages where a sender is known.
fn has_sender(s: ReplyStage) -> bool {
    matches!(
        s,
        ReplyStage::Mail
            | ReplyStage::Rcpt
            | ReplyStage::Data
            | ReplyStage::EndOfData
            | ReplyStage::Bdat
    )
}

/// Stages where a recipient is known.
fn has_recipient(s: ReplyStage) -> bool {
    matches!(
        s,
        ReplyStage::Rcpt | ReplyStage::Data | ReplyStage::EndOfData | ReplyStage::Bdat
    )
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError(format!("{}: cannot read it: {e}", path.display())))?;
        Scenario::parse(&text).map_err(|e| ScenarioError(format!("{}: {e}", path.display())))
    }

    /// Parses and validates scenario text. Errors name the rule (1-based, with its line)
    /// and the field.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            ScenarioError(format!(
                "not a valid scenario file: {}",
                e.to_string().trim_end()
            ))
        })?;
        let mut rules = Vec::new();
        for (i, spanned) in raw.rule.into_iter().enumerate() {
            let n = i + 1;
            let line = line_of(text, spanned.span().start);
            let at = format!("rule {n} (line {line})");
            let value = spanned.into_inner();
            let r: RawRule = value
                .try_into()
                .map_err(|e: toml::de::Error| ScenarioError(format!("{at}: {}", e.message())))?;
            let label = match &r.name {
                Some(name) => format!("rule {n} {name:?}"),
                None => format!("rule {n}"),
            };
            rules.push(build_rule(r, label).map_err(|e| ScenarioError(format!("{at}: {e}")))?);
        }
        Ok(Scenario {
            description: raw.description,
            seed: raw.seed,
            rules,
        })
    }

    /// Whether any rule draws random numbers.
    pub fn uses_randomness(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.probability.is_some() || r.delay_odds.is_some())
    }
}

fn build_reply(r: RawReply, field: &str) -> Result<ServerReply, String> {
    let code = u16::try_from(r.code)
        .ok()
        .filter(|c| (200..=599).contains(c))
        .ok_or_else(|| format!("{field}.code: {} is not a reply code (200 to 599)", r.code))?;
    let enhanced = match r.enhanced.as_deref().map(str::trim) {
        None | Some("") => String::new(),
        Some(e) => {
            let ok =
                EnhancedCode::parse_prefix(e.as_bytes()).is_some_and(|(_, used)| used == e.len());
            if !ok {
                return Err(format!(
                    "{field}.enhanced: {e:?} is not an enhanced status code such as \"4.7.1\""
                ));
            }
            let class = e.as_bytes()[0];
            let want = b'0' + (code / 100) as u8;
            if matches!(want, b'2' | b'4' | b'5') && class != want {
                return Err(format!(
                    "{field}.enhanced: {e:?} does not go with reply code {code} (its class must be {}.x.x)",
                    want as char
                ));
            }
            e.to_string()
        }
    };
    let lines = match (r.text, r.lines) {
        (Some(_), Some(_)) => {
            return Err(format!("{field}: give either text or lines, not both"));
        }
        (Some(t), None) => vec![t],
        (None, Some(l)) if l.is_empty() => {
            return Err(format!("{field}.lines: needs at least one line"));
        }
        (None, Some(l)) => l,
        (None, None) => {
            return Err(format!(
                "{field}: needs text = \"...\" (or lines = [...] for a multiline reply)"
            ));
        }
    };
    for (i, l) in lines.iter().enumerate() {
        if l.contains(['\r', '\n']) {
            return Err(format!(
                "{field}: line {} contains CR or LF; use lines = [...] for several lines",
                i + 1
            ));
        }
    }
    Ok(ServerReply::multiline(code, &enhanced, lines))
}

fn build_count(c: RawCount, field: &str) -> Result<Count, String> {
    match c {
        RawCount::Number(n) if n >= 1 => Ok(Count::one(n as u64)),
        RawCount::Number(n) => Err(format!("{field}: {n}: counting starts at 1")),
        RawCount::Text(t) => Count::parse(&t).map_err(|e| format!("{field}: {e}")),
    }
}

fn build_rule(r: RawRule, label: String) -> Result<Rule, String> {
    let stages = match r.stage {
        None => None,
        Some(s) => {
            let names = match s {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(v) => v,
            };
            if names.is_empty() {
                return Err("stage: the list is empty".into());
            }
            let mut stages = Vec::new();
            let mut any = false;
            for name in &names {
                let lower = name.trim().to_ascii_lowercase();
                if lower == "any" || lower == "*" {
                    any = true;
                    continue;
                }
                let st = parse_stage(name).ok_or_else(|| {
                    format!(
                        "stage: unknown stage {name:?} (one of {})",
                        stage_list_names()
                    )
                })?;
                if !stages.contains(&st) {
                    stages.push(st);
                }
            }
            if any { None } else { Some(stages) }
        }
    };
    let mut actions: Vec<(&str, Action)> = Vec::new();
    if let Some(reply) = r.reply {
        actions.push(("reply", Action::Reply(build_reply(reply, "reply")?)));
    }
    match r.reply_and_close {
        Some(RawReplyOrFlag::Flag(true)) => actions.push((
            "reply_and_close",
            Action::ReplyAndClose(ServerReply::new(
                421,
                "4.3.2",
                "Service not available, closing transmission channel",
            )),
        )),
        Some(RawReplyOrFlag::Reply(reply)) => actions.push((
            "reply_and_close",
            Action::ReplyAndClose(build_reply(reply, "reply_and_close")?),
        )),
        Some(RawReplyOrFlag::Flag(false)) | None => {}
    }
    if r.disconnect == Some(true) {
        actions.push(("disconnect", Action::Disconnect));
    }
    if let Some(n) = r.disconnect_after_bytes {
        actions.push(("disconnect_after_bytes", Action::DisconnectAfterBytes(n)));
    }
    if r.accept_but_drop == Some(true) {
        actions.push(("accept_but_drop", Action::AcceptButDrop));
    }
    match r.greylist {
        Some(RawGreylist::Flag(true)) => actions.push((
            "greylist",
            Action::Greylist(Greylist {
                key: vec![GreyKey::Client, GreyKey::Sender, GreyKey::Recipient],
                min_wait_ms: 0,
                reply: greylist_reply(),
            }),
        )),
        Some(RawGreylist::Table(t)) => {
            let key = match t.key {
                None => vec![GreyKey::Client, GreyKey::Sender, GreyKey::Recipient],
                Some(names) if names.is_empty() => {
                    return Err("greylist.key: the list is empty".into());
                }
                Some(names) => {
                    let mut key = Vec::new();
                    for n in names {
                        let k = match n.to_ascii_lowercase().as_str() {
                            "client" | "ip" => GreyKey::Client,
                            "sender" | "from" => GreyKey::Sender,
                            "recipient" | "rcpt" | "to" => GreyKey::Recipient,
                            _ => {
                                return Err(format!(
                                    "greylist.key: unknown part {n:?} (client, sender, recipient)"
                                ));
                            }
                        };
                        if !key.contains(&k) {
                            key.push(k);
                        }
                    }
                    key
                }
            };
            let reply = match t.reply {
                Some(r) => build_reply(r, "greylist.reply")?,
                None => greylist_reply(),
            };
            actions.push((
                "greylist",
                Action::Greylist(Greylist {
                    key,
                    min_wait_ms: t.min_wait_ms.unwrap_or(0),
                    reply,
                }),
            ));
        }
        Some(RawGreylist::Flag(false)) | None => {}
    }
    if actions.len() > 1 {
        let names: Vec<&str> = actions.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "{} are different actions; a rule has one (split it into several rules)",
            names.join(" and ")
        ));
    }
    let action_name = actions.first().map(|(n, _)| *n);
    let action = actions.pop().map(|(_, a)| a).unwrap_or(Action::Pass);
    if r.delay_ms.is_some_and(|d| d > MAX_DELAY_MS) {
        return Err(format!(
            "delay_ms: {} is more than an hour ({MAX_DELAY_MS})",
            r.delay_ms.unwrap_or(0)
        ));
    }
    let delay_ms = r.delay_ms.unwrap_or(0);
    let delay_odds = match r.delay_odds {
        None => None,
        Some(_) if delay_ms == 0 => {
            return Err("delay_odds: needs delay_ms (the unit the odds multiply)".into());
        }
        Some(o @ 1..=99) => Some(o as u8),
        Some(o) => return Err(format!("delay_odds: {o} is not between 1 and 99")),
    };
    if r.throttle == Some(0) {
        return Err("throttle: 0 bytes per second would never read anything".into());
    }
    if matches!(action, Action::Pass) && delay_ms == 0 && r.throttle.is_none() {
        return Err(
            "no action: give one of reply, reply_and_close, disconnect, disconnect_after_bytes, accept_but_drop, greylist, or delay_ms / throttle"
                .into(),
        );
    }
    let only = |stage: ReplyStage, what: &str| -> Result<(), String> {
        match &stages {
            Some(s) if s.as_slice() == [stage] => Ok(()),
            _ => Err(format!(
                "{what} needs stage = {:?} (and no other stage)",
                stage.name()
            )),
        }
    };
    match (&action, action_name) {
        (Action::AcceptButDrop, Some(name)) => only(ReplyStage::EndOfData, name)?,
        (Action::DisconnectAfterBytes(_), Some(name)) => only(ReplyStage::Data, name)?,
        (Action::Greylist(g), _) => {
            let Some(st) = &stages else {
                return Err(
                    "greylist needs a stage: rcpt (usual), mail, data or end-of-data".into(),
                );
            };
            for s in st {
                if !has_sender(*s) {
                    return Err(format!(
                        "greylist at {}: greylisting needs an envelope (stage mail, rcpt, data or end-of-data)",
                        s.name()
                    ));
                }
                if g.key.contains(&GreyKey::Recipient) && !has_recipient(*s) {
                    return Err(format!(
                        "greylist at {}: the key has the recipient, which is not known yet there (use stage rcpt, or key = [\"client\", \"sender\"])",
                        s.name()
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(st) = &stages {
        if r.sender.is_some() && !st.iter().any(|s| has_sender(*s)) {
            return Err(
                "sender: no sender is known at these stages (mail, rcpt, data, end-of-data, bdat)"
                    .into(),
            );
        }
        if r.recipient.is_some() && !st.iter().any(|s| has_recipient(*s)) {
            return Err(
                "recipient: no recipient is known at these stages (rcpt, data, end-of-data, bdat)"
                    .into(),
            );
        }
    }
    if let Some(p) = r.probability
        && !(p.is_finite() && (0.0..=1.0).contains(&p))
    {
        return Err(format!(
            "probability: {p} is not between 0.0 and 1.0 (10% is 0.1)"
        ));
    }
    if r.times == Some(0) {
        return Err("times: 0 would never apply; remove the rule instead".into());
    }
    Ok(Rule {
        label,
        stages,
        sender: r.sender.as_deref().map(Glob::new),
        recipient: r.recipient.as_deref().map(Glob::new),
        connection: r
            .connection
            .map(|c| build_count(c, "connection"))
            .transpose()?,
        message: r.message.map(|c| build_count(c, "message")).transpose()?,
        occurrence: r
            .occurrence
            .map(|c| build_count(c, "occurrence"))
            .transpose()?,
        probability: r.probability,
        times: r.times,
        action,
        delay_ms,
        delay_odds,
        throttle: r.throttle,
    })
}

// ------------------------------------------------------------------------------ flags

/// smtp-sink's hard reject reply (`-f`, `--reject-at`).
pub fn hard_reply() -> ServerReply {
    ServerReply::new(500, "5.3.0", "Error: command failed")
}

/// smtp-sink's soft reject reply (`-r`, `--defer-at`).
pub fn soft_reply() -> ServerReply {
    ServerReply::new(450, "4.3.0", "Error: command failed")
}

/// smtp-sink's reply before hanging up (`-Q`, `--hangup-after-reply`).
pub fn closing_reply() -> ServerReply {
    ServerReply::new(421, "4.0.0", "Server closing connection")
}

/// Parses `CODE [X.Y.Z] TEXT` (smtp-sink's `-b`/`-B` reply syntax).
pub fn parse_reply_text(s: &str) -> Result<ServerReply, String> {
    let s = s.trim();
    let (code, rest) = s.split_once(' ').unwrap_or((s, ""));
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| (200..=599).contains(c))
        .ok_or_else(|| format!("{s:?}: expected a reply such as \"550 5.7.1 Go away\""))?;
    let rest = rest.trim_start();
    let (enhanced, text) = match rest.split_once(' ') {
        Some((e, t)) if EnhancedCode::parse_prefix(e.as_bytes()).is_some() => (e, t),
        None if EnhancedCode::parse_prefix(rest.as_bytes()).is_some() => (rest, ""),
        _ => ("", rest),
    };
    Ok(ServerReply::new(code, enhanced, text))
}

/// Splits a stage list as smtp-sink does (commas and white space) and parses each name.
pub fn parse_stage_list(flag: &str, list: &str) -> Result<Vec<ReplyStage>, String> {
    let mut out = Vec::new();
    for name in list.split(|c: char| c == ',' || c.is_whitespace()) {
        if name.is_empty() {
            continue;
        }
        if name.eq_ignore_ascii_case("any") || name == "*" {
            for s in ReplyStage::ALL {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            continue;
        }
        let st = parse_stage(name).ok_or_else(|| {
            format!(
                "{flag} {list}: unknown stage {name:?} (one of {})",
                stage_list_names()
            )
        })?;
        if !out.contains(&st) {
            out.push(st);
        }
    }
    if out.is_empty() {
        return Err(format!("{flag}: no stage given"));
    }
    Ok(out)
}

/// A duration with an optional unit (`ms`, `s`, `m`); a bare number is in `default_unit`
/// milliseconds (1 for ms, 1000 for seconds).
pub fn parse_duration_ms(s: &str, default_unit_ms: u64) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        (t, default_unit_ms)
    };
    let v: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{s:?} is not a duration (500ms, 2s, 1m)"))?;
    let ms = (v * unit as f64).round();
    if ms > MAX_DELAY_MS as f64 {
        return Err(format!("{s:?} is more than an hour"));
    }
    Ok(ms as u64)
}

/// `STAGE:DELAY[:ODDS]` (`--delay-at`, smtp-sink's `-W`); a bare delay is in
/// `default_unit_ms`.
pub fn parse_delay_spec(
    flag: &str,
    spec: &str,
    default_unit_ms: u64,
) -> Result<(Vec<ReplyStage>, u64, Option<u8>), String> {
    let mut parts = spec.splitn(3, ':');
    let stages = parts.next().unwrap_or_default();
    let Some(delay) = parts.next() else {
        return Err(format!(
            "{flag} {spec}: expected STAGE:DELAY[:ODDS], e.g. rcpt:2000 or data:2s:50"
        ));
    };
    let stages = parse_stage_list(flag, stages)?;
    let delay = parse_duration_ms(delay, default_unit_ms).map_err(|e| format!("{flag}: {e}"))?;
    let odds = match parts.next() {
        None => None,
        Some(o) => match o.trim().parse::<u8>() {
            Ok(o @ 1..=99) => Some(o),
            _ => {
                return Err(format!(
                    "{flag} {spec}: odds {o:?} are not between 1 and 99"
                ));
            }
        },
    };
    if delay == 0 {
        return Err(format!("{flag} {spec}: the delay must be more than 0"));
    }
    Ok((stages, delay, odds))
}

/// What the command line asked for, in smtp-sink's order of precedence: hang up, 421 and
/// hang up, hard reject, soft reject, then greylisting and delays.
#[derive(Debug, Default, Clone)]
pub struct FlagFaults {
    /// `--hangup-at` / `-q`.
    pub hangup_at: Vec<String>,
    /// `--hangup-after-reply` / `-Q`.
    pub hangup_after_reply: Vec<String>,
    /// `--reject-at` / `-f`.
    pub reject_at: Vec<String>,
    /// `--defer-at` / `-r`.
    pub defer_at: Vec<String>,
    /// `--hard-reply` / `-B`.
    pub hard_reply: Option<String>,
    /// `--soft-reply` / `-b`.
    pub soft_reply: Option<String>,
    /// `--greylist`.
    pub greylist: bool,
    /// `--greylist-delay`, in milliseconds.
    pub greylist_delay_ms: u64,
    /// `--delay-at` (milliseconds by default).
    pub delay_at: Vec<String>,
    /// `-W` (seconds by default, as in smtp-sink).
    pub sink_delay: Vec<String>,
    /// `-w` (seconds before the reply to DATA).
    pub data_delay: Option<String>,
}

fn flag_rule(label: String, stages: Vec<ReplyStage>, action: Action) -> Rule {
    Rule {
        label,
        stages: Some(stages),
        sender: None,
        recipient: None,
        connection: None,
        message: None,
        occurrence: None,
        probability: None,
        times: None,
        action,
        delay_ms: 0,
        delay_odds: None,
        throttle: None,
    }
}

impl FlagFaults {
    /// The rules these flags stand for.
    pub fn rules(&self) -> Result<Vec<Rule>, String> {
        let hard = match &self.hard_reply {
            Some(t) => parse_reply_text(t).map_err(|e| format!("--hard-reply: {e}"))?,
            None => hard_reply(),
        };
        let soft = match &self.soft_reply {
            Some(t) => parse_reply_text(t).map_err(|e| format!("--soft-reply: {e}"))?,
            None => soft_reply(),
        };
        let mut rules = Vec::new();
        let lists: [(&str, &Vec<String>, Action); 4] = [
            ("--hangup-at", &self.hangup_at, Action::Disconnect),
            (
                "--hangup-after-reply",
                &self.hangup_after_reply,
                Action::ReplyAndClose(closing_reply()),
            ),
            ("--reject-at", &self.reject_at, Action::Reply(hard)),
            ("--defer-at", &self.defer_at, Action::Reply(soft)),
        ];
        for (flag, values, action) in lists {
            for v in values {
                let stages = parse_stage_list(flag, v)?;
                let names: Vec<&str> = stages.iter().map(|s| s.name()).collect();
                rules.push(flag_rule(
                    format!("{flag} {}", names.join(",")),
                    stages,
                    action.clone(),
                ));
            }
        }
        if self.greylist {
            rules.push(flag_rule(
                "--greylist".into(),
                vec![ReplyStage::Rcpt],
                Action::Greylist(Greylist {
                    key: vec![GreyKey::Client, GreyKey::Sender, GreyKey::Recipient],
                    min_wait_ms: self.greylist_delay_ms,
                    reply: greylist_reply(),
                }),
            ));
        }
        let mut delays: Vec<(String, Vec<ReplyStage>, u64, Option<u8>)> = Vec::new();
        for spec in &self.delay_at {
            let (stages, ms, odds) = parse_delay_spec("--delay-at", spec, 1)?;
            delays.push((format!("--delay-at {spec}"), stages, ms, odds));
        }
        for spec in &self.sink_delay {
            let (stages, ms, odds) = parse_delay_spec("-W", spec, 1_000)?;
            delays.push((format!("-W {spec}"), stages, ms, odds));
        }
        if let Some(d) = &self.data_delay {
            let ms = parse_duration_ms(d, 1_000).map_err(|e| format!("-w: {e}"))?;
            if ms > 0 {
                delays.push((format!("-w {d}"), vec![ReplyStage::Data], ms, None));
            }
        }
        for (label, stages, ms, odds) in delays {
            let mut r = flag_rule(label, stages, Action::Pass);
            r.delay_ms = ms;
            r.delay_odds = odds;
            rules.push(r);
        }
        Ok(rules)
    }
}

// ------------------------------------------------------------------------------ describing

impl fmt::Display for Rule {
    /// The rule in words (`--check-scenario`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut when = String::new();
        match &self.stages {
            None => when.push_str("at every reply"),
            Some(s) => {
                let names: Vec<&str> = s.iter().map(|s| s.name()).collect();
                let _ = write!(when, "at {}", names.join(" or "));
            }
        }
        let the = |c: Count| if c.every.is_some() { "" } else { "the " };
        if let Some(c) = self.occurrence {
            let _ = write!(when, ", {}{c} time in a session", the(c));
        }
        if let Some(c) = self.connection {
            let _ = write!(when, ", on {}{c} connection", the(c));
        }
        if let Some(c) = self.message {
            let _ = write!(when, ", for {}{c} message of a session", the(c));
        }
        if let Some(g) = &self.sender {
            let _ = write!(when, ", when the sender matches {g}");
        }
        if let Some(g) = &self.recipient {
            let _ = write!(when, ", when a recipient matches {g}");
        }
        if let Some(p) = self.probability {
            let _ = write!(when, ", with probability {}%", p * 100.0);
        }
        if let Some(t) = self.times {
            let _ = write!(
                when,
                ", at most {t} time{} in all",
                if t == 1 { "" } else { "s" }
            );
        }
        let mut what = match &self.action {
            Action::Pass => "the usual reply".to_string(),
            Action::Reply(r) => format!("reply {}", reply_words(r)),
            Action::ReplyAndClose(r) => format!("reply {} and close", reply_words(r)),
            Action::Disconnect => "close the connection without a reply".to_string(),
            Action::DisconnectAfterBytes(n) => format!(
                "send 354, then close without a word after {n} octets of the message (or at its end)"
            ),
            Action::AcceptButDrop => {
                "accept the message (250) but drop it: nothing is stored".to_string()
            }
            Action::Greylist(g) => {
                let key: Vec<&str> = g.key.iter().map(|k| k.name()).collect();
                format!(
                    "greylist by {}: the first attempt gets {}; a retry {} passes",
                    key.join(" + "),
                    reply_words(&g.reply),
                    if g.min_wait_ms == 0 {
                        "at any time".to_string()
                    } else {
                        format!("after {} ms or more", g.min_wait_ms)
                    }
                )
            }
        };
        if self.delay_ms > 0 {
            match self.delay_odds {
                Some(o) => {
                    let _ = write!(
                        what,
                        ", delayed by a random multiple of {} ms (smtp-sink odds {o})",
                        self.delay_ms
                    );
                }
                None => {
                    let _ = write!(what, ", delayed by {} ms", self.delay_ms);
                }
            }
        }
        if let Some(t) = self.throttle {
            let _ = write!(
                what,
                ", reading the client at {t} bytes/s until the next reply"
            );
        }
        write!(f, "{}: {when}: {what}", self.label)
    }
}

fn reply_words(r: &ServerReply) -> String {
    let mut s = r.summary();
    if r.lines.len() > 1 {
        let _ = write!(s, " (+{} more lines)", r.lines.len() - 1);
    }
    format!("\"{s}\"")
}

// ------------------------------------------------------------------------------ the engine

/// The rules of one sink, with the state they share across connections: the random
/// generator, how often each rule applied, the greylisting table.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    state: Mutex<EngineState>,
    connections: AtomicU64,
}

#[derive(Debug)]
struct EngineState {
    rng: SplitMix64,
    applied: Vec<u64>,
    /// (rule index, key) -> when first seen, and whether it has passed.
    greylist: HashMap<(usize, String), GreyEntry>,
}

/// Most greylist entries kept: the table grows with every new client/sender/recipient
/// triplet, which a client controls. When full, expired entries go first, then the oldest
/// tenth.
pub const MAX_GREYLIST_ENTRIES: usize = 100_000;
/// A first attempt not retried within this long is forgotten (postgrey's retry window: 2
/// days): a later retry starts over.
const GREYLIST_RETRY_WINDOW_US: u64 = 2 * 86_400 * 1_000_000;
/// A triplet that passed is remembered this long after it was last seen (postgrey: 35 days).
const GREYLIST_PASSED_MAX_AGE_US: u64 = 35 * 86_400 * 1_000_000;

#[derive(Debug, Clone, Copy)]
struct GreyEntry {
    first_seen: Timestamp,
    /// The last attempt (first attempt, or the last pass).
    last_seen: Timestamp,
    /// The (connection, message) of the first attempt: more recipients of that same
    /// transaction are the same attempt, not a retry.
    attempt: (u64, u64),
    passed: bool,
}

enum GreyOutcome {
    Defer(String),
    Pass,
}

impl Engine {
    /// An engine over `rules`, drawing from `seed`.
    pub fn new(rules: Vec<Rule>, seed: u64) -> Engine {
        let n = rules.len();
        Engine {
            rules,
            state: Mutex::new(EngineState {
                rng: SplitMix64::new(seed),
                applied: vec![0; n],
                greylist: HashMap::new(),
            }),
            connections: AtomicU64::new(0),
        }
    }

    /// A policy for the next connection (numbered from 1 in the order they are made).
    pub fn session(self: &Arc<Self>, client: IpAddr) -> SessionPolicy {
        let connection = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        SessionPolicy {
            engine: self.clone(),
            connection,
            client,
        }
    }

    fn decide(&self, connection: u64, client: IpAddr, ctx: &ReplyContext<'_>) -> ReplyAction {
        let Ok(mut st) = self.state.lock() else {
            return ReplyAction::Default;
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches(connection, ctx) {
                continue;
            }
            if rule.times.is_some_and(|t| st.applied[i] >= t) {
                continue;
            }
            if let Some(p) = rule.probability {
                // Drawn only here, after every other condition: the sequence of draws
                // depends on nothing but the conversations.
                if st.rng.next_f64() >= p {
                    continue;
                }
            }
            let mut label = rule.label.clone();
            let action = match &rule.action {
                Action::Pass => ReplyAction::Default,
                Action::Reply(r) => ReplyAction::Reply(r.clone()),
                Action::ReplyAndClose(r) => ReplyAction::ReplyAndClose(r.clone()),
                Action::Disconnect => ReplyAction::Disconnect,
                Action::DisconnectAfterBytes(n) => {
                    ReplyAction::DisconnectInData { after_octets: *n }
                }
                Action::AcceptButDrop => ReplyAction::AcceptButDrop,
                Action::Greylist(g) => {
                    match greylist_check(&mut st.greylist, i, g, (connection, client), ctx) {
                        GreyOutcome::Pass => continue,
                        GreyOutcome::Defer(why) => {
                            let _ = write!(label, ", {why}");
                            ReplyAction::Reply(g.reply.clone())
                        }
                    }
                }
            };
            let delay_ms = match rule.delay_odds {
                Some(odds) => {
                    let mut k = 0u64;
                    while st.rng.below(100) < u64::from(odds) {
                        k += 1;
                    }
                    if k == 0 {
                        let _ = write!(label, ", odds roll: no delay this time");
                    }
                    rule.delay_ms.saturating_mul(k)
                }
                None => rule.delay_ms,
            };
            st.applied[i] += 1;
            return ReplyAction::With(Box::new(ReplyFault {
                action,
                delay_us: delay_ms.saturating_mul(1_000),
                throttle_bytes_per_second: rule.throttle,
                label: Some(label),
            }));
        }
        ReplyAction::Default
    }
}

fn greylist_check(
    table: &mut HashMap<(usize, String), GreyEntry>,
    rule: usize,
    g: &Greylist,
    (connection, client): (u64, IpAddr),
    ctx: &ReplyContext<'_>,
) -> GreyOutcome {
    let attempt = (connection, ctx.message);
    let mut key = String::new();
    for k in &g.key {
        let part = match k {
            GreyKey::Client => client.to_string(),
            GreyKey::Sender => format!("<{}>", ctx.sender.unwrap_or("")),
            GreyKey::Recipient => match (ctx.stage, ctx.argument) {
                (ReplyStage::Rcpt | ReplyStage::EndOfData, Some(a)) => format!("<{a}>"),
                _ => {
                    let mut all: Vec<String> = ctx
                        .recipients
                        .iter()
                        .map(|r| format!("<{}>", r.to.address))
                        .collect();
                    all.sort();
                    all.join(",")
                }
            },
        };
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(&part.to_lowercase());
    }
    let now = ctx.now;
    if table
        .get(&(rule, key.clone()))
        .is_some_and(|e| grey_expired(e, now))
    {
        table.remove(&(rule, key.clone()));
    }
    match table.get_mut(&(rule, key.clone())) {
        None => {
            if table.len() >= MAX_GREYLIST_ENTRIES {
                make_room(table, now);
            }
            table.insert(
                (rule, key.clone()),
                GreyEntry {
                    first_seen: now,
                    last_seen: now,
                    attempt,
                    passed: false,
                },
            );
            GreyOutcome::Defer(format!("greylisted: first attempt of {key}"))
        }
        Some(e) if e.passed => {
            e.last_seen = now;
            GreyOutcome::Pass
        }
        Some(e) if e.attempt == attempt => {
            GreyOutcome::Defer(format!("greylisted: first attempt of {key}"))
        }
        Some(e) => {
            let waited_ms = now.0.saturating_sub(e.first_seen.0) / 1_000;
            if waited_ms >= g.min_wait_ms {
                e.passed = true;
                e.last_seen = now;
                GreyOutcome::Pass
            } else {
                GreyOutcome::Defer(format!(
                    "greylisted: {key} retried after {waited_ms} ms, before the {} ms minimum",
                    g.min_wait_ms
                ))
            }
        }
    }
}

/// Whether a greylist entry is past its time: a first attempt not retried within the retry
/// window, or a passed triplet not seen for the maximum age.
fn grey_expired(e: &GreyEntry, now: Timestamp) -> bool {
    if e.passed {
        now.0.saturating_sub(e.last_seen.0) > GREYLIST_PASSED_MAX_AGE_US
    } else {
        now.0.saturating_sub(e.first_seen.0) > GREYLIST_RETRY_WINDOW_US
    }
}

/// Frees room in a full greylist table: expired entries, then the least recently seen tenth.
fn make_room(table: &mut HashMap<(usize, String), GreyEntry>, now: Timestamp) {
    table.retain(|_, e| !grey_expired(e, now));
    if table.len() < MAX_GREYLIST_ENTRIES {
        return;
    }
    let mut ages: Vec<u64> = table.values().map(|e| e.last_seen.0).collect();
    let cut = ages.len() / 10;
    let (_, nth, _) = ages.select_nth_unstable(cut);
    let threshold = *nth;
    table.retain(|_, e| e.last_seen.0 > threshold);
}

impl Rule {
    fn matches(&self, connection: u64, ctx: &ReplyContext<'_>) -> bool {
        if let Some(stages) = &self.stages
            && !stages.contains(&ctx.stage)
        {
            return false;
        }
        if self.connection.is_some_and(|c| !c.contains(connection)) {
            return false;
        }
        if self.message.is_some_and(|c| !c.contains(ctx.message)) {
            return false;
        }
        if self
            .occurrence
            .is_some_and(|c| !c.contains(u64::from(ctx.occurrence)))
        {
            return false;
        }
        if let Some(g) = &self.sender {
            let sender_known = has_sender(ctx.stage);
            match ctx.sender {
                Some(s) if sender_known => {
                    if !g.matches(s) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        if let Some(g) = &self.recipient {
            let hit = match ctx.stage {
                ReplyStage::Rcpt => ctx.argument.is_some_and(|a| g.matches(a)),
                ReplyStage::EndOfData if ctx.argument.is_some() => {
                    ctx.argument.is_some_and(|a| g.matches(a))
                }
                ReplyStage::Data | ReplyStage::EndOfData | ReplyStage::Bdat => {
                    ctx.recipients.iter().any(|r| g.matches(&r.to.address))
                }
                _ => false,
            };
            if !hit {
                return false;
            }
        }
        true
    }
}

/// The [`ReplyPolicy`] of one connection.
#[derive(Debug)]
pub struct SessionPolicy {
    engine: Arc<Engine>,
    connection: u64,
    client: IpAddr,
}

impl ReplyPolicy for SessionPolicy {
    fn decide(&mut self, ctx: &ReplyContext<'_>) -> ReplyAction {
        self.engine.decide(self.connection, self.client, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailscope_proto::smtp::request::Path as SmtpPath;
    use mailscope_proto::smtp::server::Recipient;

    fn rcpt(a: &str) -> Recipient {
        Recipient {
            to: SmtpPath {
                address: a.into(),
                bracketed: true,
                source_route: None,
            },
            params: Vec::new(),
        }
    }

    /// Asks `engine` about one reply.
    #[allow(clippy::too_many_arguments)]
    fn ask(
        policy: &mut SessionPolicy,
        stage: ReplyStage,
        occurrence: u32,
        message: u64,
        argument: Option<&str>,
        sender: Option<&str>,
        recipients: &[Recipient],
        now_ms: u64,
    ) -> ReplyAction {
        let reply = ServerReply::new(250, "2.0.0", "Ok");
        policy.decide(&ReplyContext {
            stage,
            occurrence,
            message,
            argument,
            sender,
            recipients,
            now: Timestamp(now_ms * 1_000),
            reply: &reply,
        })
    }

    fn inner(a: ReplyAction) -> (ReplyAction, u64, Option<u64>, String) {
        match a {
            ReplyAction::With(f) => (
                f.action,
                f.delay_us / 1_000,
                f.throttle_bytes_per_second,
                f.label.unwrap_or_default(),
            ),
            other => (other, 0, None, String::new()),
        }
    }

    fn localhost() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn engine(text: &str, seed: u64) -> Arc<Engine> {
        let sc = Scenario::parse(text).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Engine::new(sc.rules, seed))
    }

    fn err(text: &str) -> String {
        match Scenario::parse(text) {
            Ok(s) => panic!("accepted: {s:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // Vigna's splitmix64.c, seed 1234567.
        let mut r = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821
            ]
        );
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 16_294_208_416_658_607_535);
        // Same seed, same draws; floats in [0, 1); below() in range.
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..1_000 {
            let x = a.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert_eq!(x.to_bits(), b.next_f64().to_bits());
            assert!(a.below(100) < 100);
            let _ = b.below(100);
        }
        // Roughly uniform: 10% of 10,000 draws is near 1,000.
        let mut r = SplitMix64::new(7);
        let hits = (0..10_000).filter(|_| r.next_f64() < 0.1).count();
        assert!((850..1_150).contains(&hits), "{hits}");
    }

    #[test]
    fn globs_are_case_insensitive_with_star_and_question_mark() {
        let g = Glob::new("*@Full.Example");
        assert!(g.matches("bob@full.example"));
        assert!(g.matches("@FULL.example"));
        assert!(!g.matches("bob@full.example.org"));
        assert!(Glob::new("b?b@*").matches("BOB@x"));
        assert!(!Glob::new("b?b@*").matches("bb@x"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("").matches(""));
        assert!(!Glob::new("").matches("a@b"));
        assert!(Glob::new("a*b*c").matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").matches("axxbyy"));
        assert!(Glob::new("*x*").matches("éxé"));
    }

    #[test]
    fn counts_parse_numbers_and_ranges() {
        assert_eq!(Count::parse("3"), Ok(Count::one(3)));
        let c = Count::parse("every 3").unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.contains(1) && c.contains(3) && !c.contains(4) && c.contains(6));
        assert_eq!(c.to_string(), "every 3rd");
        assert!(Count::parse("every 0").is_err());
        let c = Count::parse("2-4").unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.contains(1) && c.contains(2) && c.contains(4) && !c.contains(5));
        let c = Count::parse("3-").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.contains(1_000) && !c.contains(2));
        assert!(Count::parse("0").is_err());
        assert!(Count::parse("5-2").is_err());
        assert!(Count::parse("x").is_err());
        assert_eq!(c.to_string(), "3rd and later");
    }

    #[test]
    fn a_complete_file_parses() {
        let sc = Scenario::parse(
            r#"
description = "everything"
seed = 42

[[rule]]
name = "greylist"
stage = "rcpt"
greylist = { key = ["client", "sender"], min_wait_ms = 1000 }

[[rule]]
stage = ["mail", "rcpt"]
sender = "*@bounce.example"
connection = "2-"
probability = 0.5
times = 3
reply = { code = 550, enhanced = "5.7.1", lines = ["No", "Really no"] }

[[rule]]
stage = "dot"
recipient = "full@*"
message = 2
reply_and_close = true
delay_ms = 250

[[rule]]
stage = "data"
disconnect_after_bytes = 100

[[rule]]
stage = "end-of-data"
accept_but_drop = true

[[rule]]
stage = "any"
occurrence = 1
throttle = 512
delay_ms = 100
delay_odds = 50
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sc.seed, Some(42));
        assert_eq!(sc.rules.len(), 6);
        assert!(sc.uses_randomness());
        let r = &sc.rules[1];
        assert_eq!(r.stages, Some(vec![ReplyStage::Mail, ReplyStage::Rcpt]));
        assert_eq!(
            r.action,
            Action::Reply(ServerReply::multiline(
                550,
                "5.7.1",
                vec!["No".into(), "Really no".into()]
            ))
        );
        assert_eq!(sc.rules[2].stages, Some(vec![ReplyStage::EndOfData]));
        assert!(matches!(sc.rules[2].action, Action::ReplyAndClose(ref r) if r.code == 421));
        assert_eq!(sc.rules[5].stages, None);
        let words: Vec<String> = sc.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            words[0],
            "rule 1 \"greylist\": at rcpt: greylist by client + sender: the first attempt gets \"450 4.7.1 Greylisted, try again later\"; a retry after 1000 ms or more passes"
        );
        assert_eq!(
            words[1],
            "rule 2: at mail or rcpt, on the 2nd and later connection, when the sender matches \"*@bounce.example\", with probability 50%, at most 3 times in all: reply \"550 5.7.1 No (+1 more lines)\""
        );
        assert!(words[3].contains("close without a word after 100 octets"));
        assert!(words[5].contains("random multiple of 100 ms (smtp-sink odds 50)"));
        assert!(words[5].contains("512 bytes/s"));
    }

    #[test]
    fn errors_name_the_rule_line_and_field() {
        let e = err(
            "[[rule]]\nstage = \"rcpt\"\nreply = { code = 450, text = \"x\" }\n\n[[rule]]\nstagee = \"mail\"\n",
        );
        assert!(
            e.starts_with("rule 2 (line 5): unknown field `stagee`"),
            "{e}"
        );
        let e = err(
            "[[rule]]\nstage = \"rcpt\"\nreply = { code = 250, enhanced = \"4.7.1\", text = \"x\" }\n",
        );
        assert!(
            e.starts_with(
                "rule 1 (line 1): reply.enhanced: \"4.7.1\" does not go with reply code 250"
            ),
            "{e}"
        );
        let e = err("[[rule]]\nstage = \"rcpt\"\nreply = { code = 99, text = \"x\" }\n");
        assert!(e.contains("reply.code: 99 is not a reply code"), "{e}");
        let e = err("[[rule]]\nstage = \"rcpt\"\nreply = { code = 450 }\n");
        assert!(e.contains("reply: needs text"), "{e}");
        let e = err("[[rule]]\nstage = \"rcptt\"\ndisconnect = true\n");
        assert!(e.contains("stage: unknown stage \"rcptt\""), "{e}");
        let e = err("[[rule]]\nstage = \"rcpt\"\n");
        assert!(e.contains("no action"), "{e}");
        let e = err(
            "[[rule]]\nstage = \"rcpt\"\ndisconnect = true\nreply = { code = 450, text = \"x\" }\n",
        );
        assert!(
            e.contains("reply and disconnect are different actions"),
            "{e}"
        );
        let e = err("[[rule]]\nstage = \"rcpt\"\naccept_but_drop = true\n");
        assert!(
            e.contains("accept_but_drop needs stage = \"end-of-data\""),
            "{e}"
        );
        let e = err("[[rule]]\nstage = \"rcpt\"\ndisconnect_after_bytes = 5\n");
        assert!(
            e.contains("disconnect_after_bytes needs stage = \"data\""),
            "{e}"
        );
        let e = err("[[rule]]\nstage = \"rcpt\"\nprobability = 10\ndisconnect = true\n");
        assert!(
            e.contains("probability: 10 is not between 0.0 and 1.0"),
            "{e}"
        );
        let e = err("[[rule]]\nstage = \"mail\"\ngreylist = true\n");
        assert!(e.contains("the key has the recipient"), "{e}");
        let e = err("[[rule]]\nstage = \"ehlo\"\nrecipient = \"a@b\"\ndisconnect = true\n");
        assert!(e.contains("recipient: no recipient is known"), "{e}");
        let e = err("[[rule]]\nstage = \"rcpt\"\ndelay_ms = 5000000\n");
        assert!(e.contains("delay_ms"), "{e}");
        let e = err("[[rule]]\nstage = \"rcpt\"\ndelay_odds = 5\ndisconnect = true\n");
        assert!(e.contains("delay_odds: needs delay_ms"), "{e}");
        let e = err("[[rule]]\nstage = \"rcpt\"\nconnection = 0\ndisconnect = true\n");
        assert!(e.contains("connection: 0: counting starts at 1"), "{e}");
        let e = err("[[rule]]\nstage = \"rcpt\"\ntimes = 0\ndisconnect = true\n");
        assert!(e.contains("times: 0"), "{e}");
        let e = err("seed = \"x\"\n");
        assert!(e.starts_with("not a valid scenario file"), "{e}");
        let e = err("[[rules]]\nstage = \"rcpt\"\n");
        assert!(e.contains("unknown field `rules`"), "{e}");
        let e = err("[[rule]]\nstage = \"rcpt\"\nreply = { code = 450, text = \"a\\r\\nb\" }\n");
        assert!(e.contains("contains CR or LF"), "{e}");
    }

    #[test]
    fn first_match_wins_and_conditions_apply() {
        let e = engine(
            r#"
[[rule]]
stage = "rcpt"
recipient = "full@*"
reply = { code = 452, enhanced = "4.2.2", text = "Mailbox full" }

[[rule]]
stage = "rcpt"
reply = { code = 550, enhanced = "5.1.1", text = "No such user" }
connection = 2

[[rule]]
stage = "mail"
sender = ""
occurrence = 2
disconnect = true

[[rule]]
stage = "end-of-data"
recipient = "*@drop.example"
message = 2
accept_but_drop = true
"#,
            1,
        );
        let mut p1 = e.session(localhost());
        let (a, _, _, label) = inner(ask(
            &mut p1,
            ReplyStage::Rcpt,
            1,
            1,
            Some("FULL@x.example"),
            Some("a@b"),
            &[],
            0,
        ));
        assert!(
            matches!(a, ReplyAction::Reply(ref r) if r.code == 452),
            "{a:?}"
        );
        assert_eq!(label, "rule 1");
        // Rule 2 is for the second connection only.
        let a = ask(
            &mut p1,
            ReplyStage::Rcpt,
            2,
            1,
            Some("bob@x.example"),
            Some("a@b"),
            &[],
            0,
        );
        assert_eq!(a, ReplyAction::Default);
        let mut p2 = e.session(localhost());
        let (a, ..) = inner(ask(
            &mut p2,
            ReplyStage::Rcpt,
            1,
            1,
            Some("bob@x.example"),
            Some("a@b"),
            &[],
            0,
        ));
        assert!(
            matches!(a, ReplyAction::Reply(ref r) if r.code == 550),
            "{a:?}"
        );
        // The null sender, the second MAIL of the session only.
        assert_eq!(
            ask(&mut p1, ReplyStage::Mail, 1, 1, Some(""), Some(""), &[], 0),
            ReplyAction::Default
        );
        assert_eq!(
            ask(
                &mut p1,
                ReplyStage::Mail,
                2,
                2,
                Some("x@y"),
                Some("x@y"),
                &[],
                0
            ),
            ReplyAction::Default
        );
        let (a, ..) = inner(ask(
            &mut p1,
            ReplyStage::Mail,
            2,
            2,
            Some(""),
            Some(""),
            &[],
            0,
        ));
        assert_eq!(a, ReplyAction::Disconnect);
        // At the end of data, any accepted recipient counts, and the message number.
        let rcpts = [rcpt("a@ok.example"), rcpt("b@DROP.example")];
        assert_eq!(
            ask(
                &mut p1,
                ReplyStage::EndOfData,
                1,
                1,
                None,
                Some("s@x"),
                &rcpts,
                0
            ),
            ReplyAction::Default
        );
        let (a, ..) = inner(ask(
            &mut p1,
            ReplyStage::EndOfData,
            2,
            2,
            None,
            Some("s@x"),
            &rcpts,
            0,
        ));
        assert_eq!(a, ReplyAction::AcceptButDrop);
    }

    #[test]
    fn times_limits_applications_across_connections() {
        let e = engine(
            "[[rule]]\nstage = \"mail\"\ntimes = 2\nreply = { code = 451, text = \"later\" }\n",
            1,
        );
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut p = e.session(localhost());
            for n in 1..=2 {
                got.push(
                    inner(ask(
                        &mut p,
                        ReplyStage::Mail,
                        n,
                        1,
                        Some("a@b"),
                        Some("a@b"),
                        &[],
                        0,
                    ))
                    .0 != ReplyAction::Default,
                );
            }
        }
        assert_eq!(got, [true, true, false, false]);
    }

    #[test]
    fn probability_is_reproducible_with_a_seed() {
        let text = "[[rule]]\nstage = \"rcpt\"\nprobability = 0.3\nreply_and_close = { code = 421, enhanced = \"4.3.2\", text = \"busy\" }\n";
        let run = |seed| {
            let e = engine(text, seed);
            let mut p = e.session(localhost());
            (1..=200)
                .map(|n| {
                    inner(ask(
                        &mut p,
                        ReplyStage::Rcpt,
                        n,
                        1,
                        Some("a@b"),
                        Some("s@x"),
                        &[],
                        0,
                    ))
                    .0 != ReplyAction::Default
                })
                .collect::<Vec<bool>>()
        };
        let a = run(99);
        assert_eq!(a, run(99));
        assert_ne!(a, run(100));
        let hits = a.iter().filter(|h| **h).count();
        assert!((35..85).contains(&hits), "{hits} of 200 at 30%");
        // Draws happen only when everything else matched: other stages do not move the
        // sequence.
        let e = engine(text, 99);
        let mut p = e.session(localhost());
        let mut b = Vec::new();
        for n in 1..=200 {
            let _ = ask(
                &mut p,
                ReplyStage::Mail,
                n,
                1,
                Some("s@x"),
                Some("s@x"),
                &[],
                0,
            );
            b.push(
                inner(ask(
                    &mut p,
                    ReplyStage::Rcpt,
                    n,
                    1,
                    Some("a@b"),
                    Some("s@x"),
                    &[],
                    0,
                ))
                .0 != ReplyAction::Default,
            );
        }
        assert_eq!(a, b);
    }

    #[test]
    fn greylisting_defers_the_first_attempt_per_key_and_remembers() {
        let e = engine(
            "[[rule]]\nstage = \"rcpt\"\ngreylist = { min_wait_ms = 1000 }\n",
            1,
        );
        let mut p = e.session(localhost());
        let (a, _, _, label) = inner(ask(
            &mut p,
            ReplyStage::Rcpt,
            1,
            1,
            Some("B@x"),
            Some("a@y"),
            &[],
            0,
        ));
        assert_eq!(a, ReplyAction::Reply(greylist_reply()));
        assert_eq!(
            label,
            "rule 1, greylisted: first attempt of 127.0.0.1 <a@y> <b@x>"
        );
        // Another recipient is another key.
        let (a, ..) = inner(ask(
            &mut p,
            ReplyStage::Rcpt,
            2,
            1,
            Some("c@x"),
            Some("a@y"),
            &[],
            10,
        ));
        assert_eq!(a, ReplyAction::Reply(greylist_reply()));
        // Too early (the next transaction of the same session is a retry).
        let (a, _, _, label) = inner(ask(
            &mut p,
            ReplyStage::Rcpt,
            3,
            2,
            Some("b@x"),
            Some("a@y"),
            &[],
            500,
        ));
        assert_eq!(a, ReplyAction::Reply(greylist_reply()));
        assert!(
            label.contains("retried after 500 ms, before the 1000 ms minimum"),
            "{label}"
        );
        // A new connection after the wait passes, and keeps passing.
        let mut p = e.session(localhost());
        assert_eq!(
            ask(
                &mut p,
                ReplyStage::Rcpt,
                1,
                1,
                Some("b@x"),
                Some("A@Y"),
                &[],
                1_000
            ),
            ReplyAction::Default
        );
        assert_eq!(
            ask(
                &mut p,
                ReplyStage::Rcpt,
                2,
                1,
                Some("b@x"),
                Some("a@y"),
                &[],
                1_001
            ),
            ReplyAction::Default
        );
        // Another client address starts over.
        let mut p = e.session(IpAddr::from([127, 0, 0, 2]));
        let (a, ..) = inner(ask(
            &mut p,
            ReplyStage::Rcpt,
            1,
            1,
            Some("b@x"),
            Some("a@y"),
            &[],
            2_000,
        ));
        assert_eq!(a, ReplyAction::Reply(greylist_reply()));
    }

    #[test]
    fn greylist_entries_expire_and_the_table_is_bounded() {
        let e = engine(
            "[[rule]]\nstage = \"rcpt\"\ngreylist = { min_wait_ms = 1000 }\n",
            1,
        );
        const DAY: u64 = 86_400_000;
        let at = |p: &mut SessionPolicy, conn: u32, ms: u64| {
            inner(ask(
                p,
                ReplyStage::Rcpt,
                conn,
                1,
                Some("b@x"),
                Some("a@y"),
                &[],
                ms,
            ))
            .3
        };
        let mut p = e.session(localhost());
        assert!(at(&mut p, 1, 0).contains("first attempt"));
        // Not retried within the 2-day window: the retry is a first attempt again.
        let mut p = e.session(localhost());
        assert!(at(&mut p, 1, 3 * DAY).contains("first attempt"));
        let mut p = e.session(localhost());
        assert_eq!(
            ask(
                &mut p,
                ReplyStage::Rcpt,
                1,
                1,
                Some("b@x"),
                Some("a@y"),
                &[],
                3 * DAY + 2_000
            ),
            ReplyAction::Default
        );
        // Passed: remembered while seen within 35 days, forgotten after.
        let mut p = e.session(localhost());
        assert_eq!(
            ask(
                &mut p,
                ReplyStage::Rcpt,
                1,
                1,
                Some("b@x"),
                Some("a@y"),
                &[],
                30 * DAY
            ),
            ReplyAction::Default
        );
        let mut p = e.session(localhost());
        assert!(at(&mut p, 1, 66 * DAY).contains("first attempt"));

        // A full table makes room: expired entries first, then the least recently seen.
        let mut table = HashMap::new();
        for i in 0..MAX_GREYLIST_ENTRIES {
            table.insert(
                (0, format!("k{i}")),
                GreyEntry {
                    first_seen: Timestamp(i as u64),
                    last_seen: Timestamp(i as u64),
                    attempt: (1, 1),
                    passed: true,
                },
            );
        }
        make_room(&mut table, Timestamp(MAX_GREYLIST_ENTRIES as u64));
        assert!(
            table.len() <= MAX_GREYLIST_ENTRIES * 9 / 10,
            "{}",
            table.len()
        );
        assert!(!table.contains_key(&(0, "k0".to_string())));
        assert!(table.contains_key(&(0, format!("k{}", MAX_GREYLIST_ENTRIES - 1))));
    }

    #[test]
    fn greylisting_by_sender_defers_the_whole_first_transaction() {
        let e = engine(
            "[[rule]]\nstage = \"rcpt\"\ngreylist = { key = [\"sender\"] }\n",
            1,
        );
        let mut p = e.session(localhost());
        for (n, to) in [(1, "a@x"), (2, "b@x"), (3, "c@x")] {
            let (a, ..) = inner(ask(
                &mut p,
                ReplyStage::Rcpt,
                n,
                1,
                Some(to),
                Some("s@y"),
                &[],
                0,
            ));
            assert_eq!(a, ReplyAction::Reply(greylist_reply()), "{to}");
        }
        let mut p = e.session(localhost());
        assert_eq!(
            ask(
                &mut p,
                ReplyStage::Rcpt,
                1,
                1,
                Some("a@x"),
                Some("s@y"),
                &[],
                1
            ),
            ReplyAction::Default
        );
        assert_eq!(
            ask(
                &mut p,
                ReplyStage::Rcpt,
                2,
                1,
                Some("z@x"),
                Some("s@y"),
                &[],
                1
            ),
            ReplyAction::Default
        );
    }

    #[test]
    fn flags_become_rules_in_smtp_sink_order() {
        let f = FlagFaults {
            hangup_at: vec!["quit".into()],
            hangup_after_reply: vec!["CONNECT".into()],
            reject_at: vec!["mail, rcpt".into()],
            defer_at: vec![".".into()],
            soft_reply: Some("451 4.7.0 Not now".into()),
            greylist: true,
            delay_at: vec!["rcpt:1500".into()],
            sink_delay: vec!["data:2:50".into()],
            data_delay: Some("1".into()),
            ..FlagFaults::default()
        };
        let rules = f.rules().unwrap_or_else(|e| panic!("{e}"));
        let words: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            words,
            [
                "--hangup-at quit: at quit: close the connection without a reply",
                "--hangup-after-reply connect: at connect: reply \"421 4.0.0 Server closing connection\" and close",
                "--reject-at mail,rcpt: at mail or rcpt: reply \"500 5.3.0 Error: command failed\"",
                "--defer-at end-of-data: at end-of-data: reply \"451 4.7.0 Not now\"",
                "--greylist: at rcpt: greylist by client + sender + recipient: the first attempt gets \"450 4.7.1 Greylisted, try again later\"; a retry at any time passes",
                "--delay-at rcpt:1500: at rcpt: the usual reply, delayed by 1500 ms",
                "-W data:2:50: at data: the usual reply, delayed by a random multiple of 2000 ms (smtp-sink odds 50)",
                "-w 1: at data: the usual reply, delayed by 1000 ms",
            ]
        );
        let bad = FlagFaults {
            reject_at: vec!["mail,bogus".into()],
            ..FlagFaults::default()
        };
        assert!(
            bad.rules()
                .is_err_and(|e| e.contains("unknown stage \"bogus\""))
        );
        let bad = FlagFaults {
            delay_at: vec!["rcpt".into()],
            ..FlagFaults::default()
        };
        assert!(
            bad.rules()
                .is_err_and(|e| e.contains("expected STAGE:DELAY"))
        );
        assert_eq!(parse_duration_ms("2s", 1), Ok(2_000));
        assert_eq!(parse_duration_ms("250ms", 1_000), Ok(250));
        assert_eq!(parse_duration_ms("1.5", 1_000), Ok(1_500));
        assert_eq!(parse_duration_ms("700", 1), Ok(700));
        assert!(parse_duration_ms("-1", 1).is_err());
        assert_eq!(
            parse_reply_text("554 5.7.1 Go away"),
            Ok(ServerReply::new(554, "5.7.1", "Go away"))
        );
        assert_eq!(
            parse_reply_text("451 Try later"),
            Ok(ServerReply::new(451, "", "Try later"))
        );
        assert!(parse_reply_text("hello").is_err());
    }

    #[test]
    fn smtp_sink_odds_give_a_geometric_multiple_of_the_delay() {
        let e = engine(
            "[[rule]]\nstage = \"rcpt\"\ndelay_ms = 100\ndelay_odds = 50\n",
            5,
        );
        let mut p = e.session(localhost());
        let mut delays = Vec::new();
        for n in 1..=400 {
            let (_, d, _, _) = inner(ask(
                &mut p,
                ReplyStage::Rcpt,
                n,
                1,
                Some("a@b"),
                Some("s@x"),
                &[],
                0,
            ));
            assert_eq!(d % 100, 0);
            delays.push(d / 100);
        }
        let zeros = delays.iter().filter(|k| **k == 0).count();
        // P(k = 0) = 0.5 at odds 50.
        assert!((150..250).contains(&zeros), "{zeros}");
        assert!(delays.iter().any(|k| *k >= 3));
    }

    #[test]
    fn every_shipped_example_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.map(|e| e.path()).unwrap_or_default();
            if path.extension().is_some_and(|x| x == "toml") {
                let sc = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!sc.rules.is_empty(), "{}", path.display());
                assert!(
                    sc.description.is_some(),
                    "{} has no description",
                    path.display()
                );
                n += 1;
            }
        }
        assert!(n >= 5, "only {n} examples in {}", dir.display());
    }
}
