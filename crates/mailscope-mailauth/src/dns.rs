//! DNS for the checks: typed answers that keep the difference between "no such domain",
//! "no record of that type", "the server failed" and "no answer in time" (SPF, DMARC and
//! DNSBL verdicts all turn on it), a trace of every query for the report, and limits on what
//! an answer may carry.
//!
//! Every query goes through a resolver from [`mailscope_net::resolver::build_resolver`], so
//! `--resolver ADDR[:PORT]` means the same here as everywhere else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use mailscope_proto::Timestamp;

/// At most this many records of one answer are used; the rest are dropped and the trace
/// says so. No real mail record set comes close.
pub const MAX_RECORDS: usize = 256;
/// At most this many octets of TXT data per record (after joining its strings).
pub const MAX_TXT_LEN: usize = 16 * 1024;
/// At most this many queries are traced per [`Dns`]; later ones are counted, not kept.
pub const MAX_TRACE: usize = 10_000;

/// What a query came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the asked type (never empty).
    Records(Vec<T>),
    /// The name does not exist (RCODE 3, NXDOMAIN).
    NxDomain,
    /// The name exists but has no record of this type (NOERROR with an empty answer).
    NoData,
    /// No usable answer: timeout, SERVFAIL, REFUSED, a broken reply, or a name that cannot be
    /// asked for at all.
    Failed(Failure),
}

/// Why a query gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the time limit (all attempts).
    Timeout,
    /// The server answered with an error code: its mnemonic (`SERVFAIL`, `REFUSED`, ...).
    Rcode(String),
    /// The name is not a valid DNS name (too long, empty label, ...); nothing was sent.
    InvalidName(String),
    /// Anything else: transport errors, undecodable replies.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::Rcode(r) => write!(f, "server answered {r}"),
            Failure::InvalidName(r) => write!(f, "invalid name: {r}"),
            Failure::Other(r) => f.write_str(r),
        }
    }
}

impl<T> Answer<T> {
    /// The records, or an empty slice for every other outcome.
    pub fn records(&self) -> &[T] {
        match self {
            Answer::Records(r) => r,
            _ => &[],
        }
    }

    /// NXDOMAIN or NODATA: a "void look-up" in RFC 7208 §4.6.4's sense.
    pub fn is_void(&self) -> bool {
        matches!(self, Answer::NxDomain | Answer::NoData)
    }

    /// One word for reports: `answer`, `nxdomain`, `nodata`, `timeout`, `servfail`, ...
    pub fn outcome(&self) -> String {
        match self {
            Answer::Records(_) => "answer".into(),
            Answer::NxDomain => "nxdomain".into(),
            Answer::NoData => "nodata".into(),
            Answer::Failed(Failure::Timeout) => "timeout".into(),
            Answer::Failed(Failure::Rcode(r)) => r.to_ascii_lowercase(),
            Answer::Failed(Failure::InvalidName(_)) => "invalid-name".into(),
            Answer::Failed(Failure::Other(_)) => "error".into(),
        }
    }

    fn map_records<U>(self, f: impl FnOnce(Vec<T>) -> Vec<U>) -> Answer<U> {
        match self {
            Answer::Records(r) => {
                let r = f(r);
                if r.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Records(r)
                }
            }
            Answer::NxDomain => Answer::NxDomain,
            Answer::NoData => Answer::NoData,
            Answer::Failed(e) => Answer::Failed(e),
        }
    }
}

/// One traced query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRecord {
    /// When it was sent.
    pub at: Timestamp,
    /// The name asked for (absolute, without the trailing dot).
    pub name: String,
    /// Record type, e.g. `TXT`.
    pub rtype: String,
    /// [`Answer::outcome`].
    pub outcome: String,
    /// The answer's records in presentation form (capped like the records themselves).
    pub answers: Vec<String>,
    /// Round-trip time (0 for an answer from the resolver's cache).
    pub elapsed: Duration,
    /// The answer was authenticated by DNSSEC (AD bit from a validating resolver).
    pub authentic: bool,
    /// Records beyond [`MAX_RECORDS`] or TXT octets beyond [`MAX_TXT_LEN`] were dropped.
    pub truncated: bool,
}

/// A TLSA record (RFC 6698).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage (0–3).
    pub usage: u8,
    /// Selector (0 full certificate, 1 SubjectPublicKeyInfo).
    pub selector: u8,
    /// Matching type (0 exact, 1 SHA-256, 2 SHA-512).
    pub matching: u8,
    /// Certificate association data.
    pub data: Vec<u8>,
}

/// The DNS side of every check: a resolver plus the trace of what was asked.
pub struct Dns {
    resolver: TokioResolver,
    /// The server `--resolver` named (for the DNSSEC-aware queries, which go to it directly);
    /// `None`: the first name server of the system configuration.
    server: Option<std::net::SocketAddr>,
    timeout: Duration,
    trace: Mutex<Trace>,
}

#[derive(Default)]
struct Trace {
    queries: Vec<QueryRecord>,
    dropped: u64,
}

impl Dns {
    /// Wraps a resolver made by `mailscope_net::resolver::build_resolver`. `server` is the
    /// address given to it (`None` for the system configuration) and `timeout` its per-query
    /// timeout: the DNSSEC-aware queries ([`Dns::tlsa_dnssec`], [`Dns::mx_dnssec`]) use them.
    pub fn new(
        resolver: TokioResolver,
        server: Option<std::net::SocketAddr>,
        timeout: Duration,
    ) -> Self {
        Self {
            resolver,
            server,
            timeout,
            trace: Mutex::new(Trace::default()),
        }
    }

    /// A handle on the same resolver (and its cache) with a trace of its own, for a check
    /// that runs beside others and reports its queries separately.
    pub fn fork(&self) -> Self {
        Self::new(self.resolver.clone(), self.server, self.timeout)
    }

    /// The underlying resolver (for mail-auth's verifiers, which take one).
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// Every query so far, in the order they were sent, and how many were not kept.
    pub fn trace(&self) -> (Vec<QueryRecord>, u64) {
        let t = self.trace.lock().unwrap_or_else(|e| e.into_inner());
        (t.queries.clone(), t.dropped)
    }

    /// Takes the queries traced so far (for commands that print them as they go).
    pub fn take_trace(&self) -> Vec<QueryRecord> {
        let mut t = self.trace.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut t.queries)
    }

    /// TXT records, each with its character-strings joined (RFC 7208 §3.3).
    pub async fn txt(&self, name: &str) -> Answer<Vec<u8>> {
        self.query(name, RecordType::TXT, |rd| match rd {
            RData::TXT(t) => {
                let mut v = Vec::new();
                for s in t.txt_data.iter() {
                    v.extend_from_slice(s);
                }
                Some(v)
            }
            _ => None,
        })
        .await
    }

    /// A records.
    pub async fn a(&self, name: &str) -> Answer<Ipv4Addr> {
        self.query(name, RecordType::A, |rd| match rd {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// AAAA records.
    pub async fn aaaa(&self, name: &str) -> Answer<Ipv6Addr> {
        self.query(name, RecordType::AAAA, |rd| match rd {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// A or AAAA, by the family of `like`.
    pub async fn addrs_like(&self, name: &str, like: IpAddr) -> Answer<IpAddr> {
        match like {
            IpAddr::V4(_) => self
                .a(name)
                .await
                .map_records(|v| v.into_iter().map(IpAddr::V4).collect()),
            IpAddr::V6(_) => self
                .aaaa(name)
                .await
                .map_records(|v| v.into_iter().map(IpAddr::V6).collect()),
        }
    }

    /// MX records as (preference, exchange without the trailing dot), sorted by preference.
    /// A null MX (RFC 7505) shows as an empty exchange.
    pub async fn mx(&self, name: &str) -> Answer<(u16, String)> {
        self.query(name, RecordType::MX, |rd| match rd {
            RData::MX(m) => Some((
                m.preference,
                m.exchange.to_ascii().trim_end_matches('.').to_owned(),
            )),
            _ => None,
        })
        .await
        .map_records(|mut v| {
            v.sort();
            v
        })
    }

    /// PTR names for an address (without the trailing dot).
    pub async fn ptr(&self, ip: IpAddr) -> Answer<String> {
        self.query(&reverse_name(ip), RecordType::PTR, |rd| match rd {
            RData::PTR(p) => Some(p.0.to_ascii().trim_end_matches('.').to_owned()),
            _ => None,
        })
        .await
    }

    /// TLSA records (RFC 6698).
    pub async fn tlsa(&self, name: &str) -> Answer<Tlsa> {
        self.query(name, RecordType::TLSA, |rd| match rd {
            RData::TLSA(t) => Some(Tlsa {
                usage: u8::from(t.cert_usage),
                selector: u8::from(t.selector),
                matching: u8::from(t.matching),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
        .await
    }

    /// TLSA records and whether the resolver vouched for them with the AD bit (DNSSEC).
    pub async fn tlsa_dnssec(&self, name: &str) -> (Answer<Tlsa>, bool) {
        self.query_ad(name, RecordType::TLSA, |rd| match rd {
            RData::TLSA(t) => Some(Tlsa {
                usage: u8::from(t.cert_usage),
                selector: u8::from(t.selector),
                matching: u8::from(t.matching),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
        .await
    }

    /// MX records (as [`Dns::mx`]) and whether the resolver vouched for them with the AD bit.
    pub async fn mx_dnssec(&self, name: &str) -> (Answer<(u16, String)>, bool) {
        let (answer, ad) = self
            .query_ad(name, RecordType::MX, |rd| match rd {
                RData::MX(m) => Some((
                    m.preference,
                    m.exchange.to_ascii().trim_end_matches('.').to_owned(),
                )),
                _ => None,
            })
            .await;
        (
            answer.map_records(|mut v| {
                v.sort();
                v
            }),
            ad,
        )
    }

    /// Records of a type this module has no typed helper for, in presentation form.
    pub async fn raw(&self, name: &str, rtype: RecordType) -> Answer<String> {
        self.query(name, rtype, |rd| Some(rd.to_string())).await
    }

    async fn query<T>(
        &self,
        name: &str,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Answer<T> {
        let at = mailscope_net::smtp::now();
        let name = name.trim_end_matches('.');
        let mut rec = QueryRecord {
            at,
            name: name.to_owned(),
            rtype: rtype_name(rtype),
            outcome: String::new(),
            answers: Vec::new(),
            elapsed: Duration::ZERO,
            authentic: false,
            truncated: false,
        };
        if let Err(why) = check_name(name) {
            let answer = Answer::Failed(Failure::InvalidName(why));
            rec.outcome = answer.outcome();
            self.record(rec);
            return answer;
        }
        let qname = match query_name(name) {
            Ok(n) => n,
            Err(why) => {
                let answer = Answer::Failed(Failure::InvalidName(why));
                rec.outcome = answer.outcome();
                self.record(rec);
                return answer;
            }
        };
        let start = Instant::now();
        let result = self.resolver.lookup(qname, rtype).await;
        rec.elapsed = start.elapsed();
        let answer = match result {
            Ok(lookup) => {
                rec.authentic = lookup.message().authentic_data;
                let mut out = Vec::new();
                let mut oversize = None;
                for r in lookup.answers() {
                    if r.record_type() != rtype {
                        // CNAMEs on the way are not answers of the asked type.
                        continue;
                    }
                    if out.len() == MAX_RECORDS {
                        rec.truncated = true;
                        break;
                    }
                    if let RData::TXT(t) = &r.data {
                        let len: usize = t.txt_data.iter().map(|s| s.len()).sum();
                        if len > MAX_TXT_LEN {
                            rec.truncated = true;
                            oversize = Some(len);
                            continue;
                        }
                    }
                    if let Some(v) = pick(&r.data) {
                        rec.answers.push(r.data.to_string());
                        out.push(v);
                    }
                }
                if let Some(len) = oversize {
                    // Dropping it quietly could turn "this record is broken" into "there is
                    // no record": the answer as a whole cannot be used.
                    Answer::Failed(Failure::Other(format!(
                        "a TXT record of {len} octets is over the {MAX_TXT_LEN}-octet limit"
                    )))
                } else if out.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Records(out)
                }
            }
            Err(e) => classify(&e),
        };
        rec.outcome = answer.outcome();
        self.record(rec);
        answer
    }

    /// A query sent straight to the resolver with the AD bit set (RFC 6840 §5.7: "tell me
    /// whether you validated this"), so the answer's AD bit says whether a validating
    /// resolver authenticated it. The stub resolver's cache is bypassed: mailscope trusts the
    /// AD bit of the resolver the user chose and does no DNSSEC validation of its own
    /// (docs/checks.md, "DNSSEC"). Over UDP; a truncated answer is retried over TCP.
    async fn query_ad<T>(
        &self,
        name: &str,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> (Answer<T>, bool) {
        let at = mailscope_net::smtp::now();
        let name = name.trim_end_matches('.');
        let mut rec = QueryRecord {
            at,
            name: name.to_owned(),
            rtype: rtype_name(rtype),
            outcome: String::new(),
            answers: Vec::new(),
            elapsed: Duration::ZERO,
            authentic: false,
            truncated: false,
        };
        let start = Instant::now();
        let result = match check_name(name) {
            Err(why) => Err(Failure::InvalidName(why)),
            Ok(()) => match self.server_addr() {
                Err(e) => Err(Failure::Other(e)),
                Ok(server) => tokio::time::timeout(self.timeout, exchange_ad(server, name, rtype))
                    .await
                    .unwrap_or(Err(Failure::Timeout)),
            },
        };
        rec.elapsed = start.elapsed();
        let answer = match result {
            Err(f) => Answer::Failed(f),
            Ok(msg) => {
                rec.authentic = msg.authentic_data;
                match msg.response_code {
                    ResponseCode::NXDomain => Answer::NxDomain,
                    ResponseCode::NoError => {
                        let mut out = Vec::new();
                        for r in msg.answers.iter().filter(|r| r.record_type() == rtype) {
                            if out.len() == MAX_RECORDS {
                                rec.truncated = true;
                                break;
                            }
                            if let Some(v) = pick(&r.data) {
                                rec.answers.push(r.data.to_string());
                                out.push(v);
                            }
                        }
                        if out.is_empty() {
                            Answer::NoData
                        } else {
                            Answer::Records(out)
                        }
                    }
                    other => Answer::Failed(Failure::Rcode(rcode_name(other))),
                }
            }
        };
        rec.outcome = answer.outcome();
        let ad = rec.authentic;
        self.record(rec);
        (answer, ad)
    }

    fn server_addr(&self) -> Result<std::net::SocketAddr, String> {
        if let Some(s) = self.server {
            return Ok(s);
        }
        let (config, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?;
        let ns = config
            .name_servers()
            .first()
            .ok_or_else(|| "the system resolver configuration names no server".to_owned())?;
        let port = ns.connections.first().map_or(53, |c| c.port);
        Ok(std::net::SocketAddr::new(ns.ip, port))
    }

    fn record(&self, rec: QueryRecord) {
        let mut t = self.trace.lock().unwrap_or_else(|e| e.into_inner());
        if t.queries.len() < MAX_TRACE {
            t.queries.push(rec);
        } else {
            t.dropped += 1;
        }
    }
}

/// Largest DNS message accepted over TCP (the protocol's own limit).
const MAX_DNS_MESSAGE: usize = 65_535;

/// One query/response exchange with the AD bit set, UDP then TCP if truncated.
async fn exchange_ad(
    server: std::net::SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<hickory_resolver::proto::op::Message, Failure> {
    use hickory_resolver::proto::op::{Edns, Message, Query};
    use hickory_resolver::proto::rr::Name;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let qname =
        Name::from_ascii(format!("{name}.")).map_err(|e| Failure::InvalidName(e.to_string()))?;
    let mut msg = Message::query();
    msg.add_query(Query::query(qname, rtype));
    msg.metadata.recursion_desired = true;
    msg.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    let id = msg.metadata.id;
    let wire = msg
        .to_vec()
        .map_err(|e| Failure::Other(format!("cannot encode the query: {e}")))?;
    let check = |reply: Message| -> Result<Message, Failure> {
        if reply.metadata.id != id {
            return Err(Failure::Other("reply with another query id".into()));
        }
        Ok(reply)
    };

    let bind: std::net::SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| Failure::Other(format!("UDP socket: {e}")))?;
    sock.connect(server)
        .await
        .map_err(|e| Failure::Other(format!("UDP to {server}: {e}")))?;
    sock.send(&wire)
        .await
        .map_err(|e| Failure::Other(format!("UDP to {server}: {e}")))?;
    let mut buf = vec![0u8; 4096];
    let reply = loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| Failure::Other(format!("UDP from {server}: {e}")))?;
        match Message::from_vec(&buf[..n]) {
            // A stray datagram with another id: keep waiting (the caller's timeout bounds it).
            Ok(m) if m.metadata.id == id => break m,
            Ok(_) => continue,
            Err(e) => return Err(Failure::Other(format!("undecodable reply: {e}"))),
        }
    };
    if !reply.metadata.truncation {
        return check(reply);
    }
    let mut tcp = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| Failure::Other(format!("TCP to {server}: {e}")))?;
    let len = u16::try_from(wire.len())
        .map_err(|_| Failure::Other("query too long for TCP framing".into()))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    tcp.write_all(&framed)
        .await
        .map_err(|e| Failure::Other(format!("TCP to {server}: {e}")))?;
    let mut lenb = [0u8; 2];
    tcp.read_exact(&mut lenb)
        .await
        .map_err(|e| Failure::Other(format!("TCP from {server}: {e}")))?;
    let n = usize::from(u16::from_be_bytes(lenb)).min(MAX_DNS_MESSAGE);
    let mut body = vec![0u8; n];
    tcp.read_exact(&mut body)
        .await
        .map_err(|e| Failure::Other(format!("TCP from {server}: {e}")))?;
    let reply =
        Message::from_vec(&body).map_err(|e| Failure::Other(format!("undecodable reply: {e}")))?;
    check(reply)
}

fn classify<T>(e: &NetError) -> Answer<T> {
    use hickory_resolver::net::DnsError;
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => Answer::NxDomain,
            ResponseCode::NoError => Answer::NoData,
            other => Answer::Failed(Failure::Rcode(rcode_name(other))),
        },
        NetError::Dns(DnsError::ResponseCode(rc)) => {
            Answer::Failed(Failure::Rcode(rcode_name(*rc)))
        }
        NetError::Timeout => Answer::Failed(Failure::Timeout),
        other => {
            let text = other.to_string();
            if text.contains("timed out") {
                Answer::Failed(Failure::Timeout)
            } else {
                Answer::Failed(Failure::Other(text))
            }
        }
    }
}

/// The name to ask for: as hickory parses text (IDNA), or, for a name its parser refuses,
/// the labels as raw octets. DNS allows any octet in a label, and SPF macros make such names
/// (`%{l}` of `jack&jill`, `a:foo:bar/baz.example.com`, HELO names with spaces). Escapes as
/// hickory writes names from answers (`\:`, octal `\ooo`) are undone.
fn query_name(name: &str) -> Result<hickory_resolver::proto::rr::Name, String> {
    use hickory_resolver::proto::rr::Name;
    Name::from_utf8(format!("{name}."))
        .or_else(|_| Name::from_labels(raw_labels(name)))
        .map_err(|e| e.to_string())
}

/// Splits a name at unescaped dots and undoes `\X` and `\ooo` escapes.
fn raw_labels(name: &str) -> Vec<Vec<u8>> {
    let b = name.as_bytes();
    let mut labels = vec![Vec::new()];
    let mut i = 0;
    while i < b.len() {
        let cur = labels.len() - 1;
        match b[i] {
            b'.' => labels.push(Vec::new()),
            b'\\'
                if b.get(i + 1..i + 4)
                    .is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c))) =>
            {
                let v = b[i + 1..i + 4]
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                labels[cur].push(u8::try_from(v).unwrap_or(u8::MAX));
                i += 3;
            }
            b'\\' if i + 1 < b.len() => {
                labels[cur].push(b[i + 1]);
                i += 1;
            }
            c => labels[cur].push(c),
        }
        i += 1;
    }
    labels
}

/// The mnemonic of a response code as DNS tools print it (RFC 6895 §2.3): `SERVFAIL`,
/// `REFUSED`, ...; `RCODE42` for one without a name.
pub fn rcode_name(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// A record type as DNS tools print it; one hickory does not know is `TYPE99` (RFC 3597 §5).
pub fn rtype_name(rtype: RecordType) -> String {
    match rtype {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}

/// Checks that `name` can be asked for: at most 253 octets, labels of 1–63 octets.
pub fn check_name(name: &str) -> Result<(), String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 253 {
        return Err(format!("{} octets, more than 253", name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("empty label in {name:?}"));
        }
        if label.len() > 63 {
            return Err(format!("label of {} octets, more than 63", label.len()));
        }
    }
    Ok(())
}

/// The reverse-lookup name of an address: `4.3.2.1.in-addr.arpa` or the nibble form under
/// `ip6.arpa` (RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// The DNSBL query prefix for an address: reversed octets for IPv4, reversed nibbles for
/// IPv6 (RFC 5782 §2.1, §2.4).
pub fn reversed_ip_labels(ip: IpAddr) -> String {
    let full = reverse_name(ip);
    match ip {
        IpAddr::V4(_) => full.trim_end_matches(".in-addr.arpa").to_owned(),
        IpAddr::V6(_) => full.trim_end_matches(".ip6.arpa").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().expect("ip")),
            "1.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reversed_ip_labels("2001:db8::1".parse().expect("ip")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
    }

    #[test]
    fn names() {
        assert!(check_name("example.test").is_ok());
        assert!(check_name("example.test.").is_ok());
        assert!(check_name("a..b").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
        assert!(check_name(&["a"; 130].join(".")).is_err());
        assert!(check_name("").is_err());
    }
}
