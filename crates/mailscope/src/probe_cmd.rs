//! `mailscope probe HOST`: which mail ports answer, what each one offers before and after
//! TLS, the TLS session and certificate, and the AUTH mechanisms, all ports at once.
//!
//! Every session runs through the existing client machines and drivers (SMTP, POP3, IMAP)
//! without a login; the probe only reads what they report. Output is check-style: one
//! `check_result` per port (area `probe`, subject `HOST:PORT`) and findings.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use futures_util::future::join_all;
use mailscope_net::{NetError, TlsClient, TlsClientOptions, TlsReport, Verification};
use mailscope_proto::finding::{
    Finding, PROBE_AUTH_BEFORE_TLS, PROBE_GREETING_REFUSED, PROBE_MAIL_BEFORE_TLS,
    PROBE_MX_INCONSISTENT, PROBE_NO_GREETING, PROBE_SUBMISSION_NO_TLS, PROBE_TLS_FAILED,
    TLS_CERT_EXPIRES_SOON,
};
use serde_json::{Value, json};

use crate::checks::{CheckOutput, DnsArgs};
use crate::cli::GlobalArgs;
use crate::output::ms;
use crate::{ExitCode, UsageError};

/// Examples shown after `--help`.
pub const PROBE_EXAMPLES: &str = "Examples:
  # All seven mail ports (25, 465, 587, 110, 995, 143, 993) at once
  mailscope probe mail.example.net

  # Chosen ports; 2525 has no label, so its protocol is detected (and marked as a guess)
  mailscope probe mx.example.net --ports 25,2525,587/submission --timeout 5

  # Every MX host of a domain on port 25, and where they differ
  mailscope probe --mx example.net

  # A test server with a private CA, as JSON events
  mailscope probe 127.0.0.1 --ports 12526/smtp,12993/imaps --tls-ca-path ca.pem --json";

/// `mailscope probe` options.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The host to probe: a name (resolved through --resolver when given) or an IP address.
    #[arg(
        value_name = "HOST",
        required_unless_present = "mx",
        conflicts_with = "mx"
    )]
    pub host: Option<String>,
    /// Probe every MX host of DOMAIN (port 25 unless --ports is given) and report where they
    /// differ (STARTTLS on one but not another, ...).
    #[arg(long, value_name = "DOMAIN")]
    pub mx: Option<String>,
    /// Ports to probe, comma separated, each as PORT or
    /// PORT/smtp|submission|smtps|pop3|pop3s|imap|imaps. A bare port other than the usual
    /// seven is detected from its greeting (or, silent for 1.5 s, TLS first), and the report
    /// marks the protocol as a guess.
    #[arg(
        long,
        value_name = "PORT[/PROTO],...",
        value_delimiter = ',',
        default_value = "25,465,587,110,995,143,993"
    )]
    pub ports: Vec<String>,
    /// Seconds for the TCP connect and for each TLS handshake, per port.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Seconds to wait for the greeting (and for each later reply) before calling the port
    /// a tarpit or another protocol.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub greeting_timeout: f64,
    /// Extra trust anchors (PEM file) for the certificate verdict.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_path: Vec<PathBuf>,
    /// Raise no findings for certificates that do not verify (the verdict is still shown;
    /// the probe always completes the handshake to see what follows it).
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// The protocol spoken on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Smtp,
    Submission,
    Smtps,
    Pop3,
    Pop3s,
    Imap,
    Imaps,
}

impl Proto {
    const ALL: [Proto; 7] = [
        Proto::Smtp,
        Proto::Submission,
        Proto::Smtps,
        Proto::Pop3,
        Proto::Pop3s,
        Proto::Imap,
        Proto::Imaps,
    ];

    fn name(self) -> &'static str {
        match self {
            Proto::Smtp => "smtp",
            Proto::Submission => "submission",
            Proto::Smtps => "smtps",
            Proto::Pop3 => "pop3",
            Proto::Pop3s => "pop3s",
            Proto::Imap => "imap",
            Proto::Imaps => "imaps",
        }
    }

    fn for_port(port: u16) -> Option<Proto> {
        Some(match port {
            25 => Proto::Smtp,
            465 => Proto::Smtps,
            587 => Proto::Submission,
            110 => Proto::Pop3,
            995 => Proto::Pop3s,
            143 => Proto::Imap,
            993 => Proto::Imaps,
            _ => return None,
        })
    }

    fn implicit_tls(self) -> bool {
        matches!(self, Proto::Smtps | Proto::Pop3s | Proto::Imaps)
    }
}

/// Parses `--ports`.
fn parse_ports(specs: &[String]) -> Result<Vec<(u16, Option<Proto>)>, String> {
    let mut out: Vec<(u16, Option<Proto>)> = Vec::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (port, label) = match spec.split_once('/') {
            Some((p, l)) => (p, Some(l)),
            None => (spec, None),
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("--ports: {spec:?} is not a port number (1-65535)"))?;
        // A port without a label and without a usual protocol is detected (`None`).
        let proto = match label {
            Some(l) => Some(
                Proto::ALL
                    .into_iter()
                    .find(|p| p.name().eq_ignore_ascii_case(l))
                    .ok_or_else(|| {
                        format!(
                            "--ports: unknown protocol {l:?} in {spec:?} (one of {})",
                            Proto::ALL.map(Proto::name).join(", ")
                        )
                    })?,
            ),
            None => Proto::for_port(port),
        };
        if out.iter().any(|(p, _)| *p == port) {
            return Err(format!("--ports: port {port} is given twice"));
        }
        out.push((port, proto));
    }
    if out.is_empty() {
        return Err("--ports: no port given".into());
    }
    Ok(out)
}

fn seconds(name: &str, v: f64) -> Result<Duration, UsageError> {
    if v.is_finite() && v > 0.0 && v <= 3600.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(UsageError(format!(
            "{name} must be between 0 and 3600 seconds, not {v}"
        )))
    }
}

/// Everything learned about one port.
#[derive(Debug)]
struct PortReport {
    port: u16,
    proto: Proto,
    /// Set when the TCP connection was made.
    connected_at: Option<Instant>,
    connect_us: Option<u64>,
    peer: Option<String>,
    /// Why the TCP connect failed, and the state it means.
    connect_error: Option<(&'static str, String)>,
    greeting: Option<String>,
    greeting_refused: bool,
    banner_us: Option<u64>,
    caps_before: Option<Vec<String>>,
    caps_after: Option<Vec<String>>,
    starttls_offered: Option<bool>,
    auth_before: Option<Vec<String>>,
    auth_after: Option<Vec<String>>,
    /// IMAP: LOGIN allowed before TLS (no LOGINDISABLED); POP3: USER offered before TLS.
    plaintext_login_before_tls: Option<bool>,
    tls: Option<Box<TlsReport>>,
    tls_error: Option<String>,
    session_failure: Option<String>,
    /// SMTP with STARTTLS: the replies to `MAIL FROM:<>` and to an AUTH that was cancelled,
    /// both sent before STARTTLS (is TLS enforced?).
    mail_before_tls: Option<String>,
    auth_before_tls: Option<(String, String)>,
    /// The protocol was detected from what the port said (no label, no usual port), with
    /// what it was detected from.
    guessed: Option<String>,
    /// False when detection failed: `proto` is then a placeholder.
    proto_known: bool,
    findings: Vec<Finding>,
    elapsed_us: u64,
}

impl PortReport {
    fn new(port: u16, proto: Proto) -> Self {
        Self {
            port,
            proto,
            connected_at: None,
            connect_us: None,
            peer: None,
            connect_error: None,
            greeting: None,
            greeting_refused: false,
            banner_us: None,
            caps_before: None,
            caps_after: None,
            starttls_offered: None,
            auth_before: None,
            auth_after: None,
            plaintext_login_before_tls: None,
            tls: None,
            tls_error: None,
            session_failure: None,
            mail_before_tls: None,
            auth_before_tls: None,
            guessed: None,
            proto_known: true,
            findings: Vec::new(),
            elapsed_us: 0,
        }
    }

    fn on_connected(&mut self, peer: std::net::SocketAddr, elapsed_us: u64) {
        self.connected_at = Some(Instant::now());
        self.connect_us = Some(elapsed_us);
        self.peer = Some(peer.to_string());
    }

    fn on_greeting(&mut self, text: String, refused: bool) {
        if self.greeting.is_some() {
            return;
        }
        self.banner_us = self
            .connected_at
            .map(|t| u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        self.greeting = Some(text);
        self.greeting_refused = refused;
    }

    fn on_session_error(&mut self, e: mailscope_net::smtp::SessionError) {
        use mailscope_net::smtp::SessionError as S;
        match e {
            S::Connect(NetError::Refused { addr }) => {
                self.connect_error = Some(("closed", format!("connection refused by {addr}")));
            }
            S::Connect(e @ NetError::Timeout { .. }) => {
                self.connect_error = Some(("filtered", e.to_string()));
            }
            S::Connect(e) => self.connect_error = Some(("error", e.to_string())),
            S::ImplicitTls(e) => self.tls_error = Some(e.to_string()),
        }
    }

    /// The one-word verdict.
    fn state(&self) -> &'static str {
        if let Some((state, _)) = &self.connect_error {
            return state;
        }
        if self.connected_at.is_none() {
            return "error";
        }
        if self.greeting_refused {
            return "refused";
        }
        if self.greeting.is_none() && !(self.proto.implicit_tls() && self.tls_error.is_some()) {
            return "no-greeting";
        }
        "open"
    }

    /// The protocol for reports: `smtp?` when guessed, `?` when not known.
    fn proto_label(&self) -> String {
        if !self.proto_known {
            "?".into()
        } else if self.guessed.is_some() {
            format!("{}?", self.proto.name())
        } else {
            self.proto.name().into()
        }
    }

    fn tls_mode(&self) -> Option<&'static str> {
        if self.proto.implicit_tls() {
            Some("implicit")
        } else if self.starttls_offered == Some(true) {
            Some("starttls")
        } else {
            None
        }
    }

    fn days_to_expiry(&self) -> Option<i64> {
        let na = self.tls.as_ref()?.chain.first()?.not_after.as_ref()?;
        let now = i64::try_from(mailscope_net::smtp::now().0 / 1_000_000).unwrap_or(i64::MAX);
        Some((na.unix - now).div_euclid(86_400))
    }
}

/// Options shared by every port's session.
struct Plan {
    address: String,
    timeout: Duration,
    greeting_timeout: Duration,
    tls: TlsClient,
}

impl Plan {
    fn step_us(&self) -> u64 {
        u64::try_from(self.greeting_timeout.as_micros()).unwrap_or(u64::MAX)
    }
}

async fn probe_smtp(plan: &Plan, r: &mut PortReport) {
    use mailscope_net::smtp::{DriverEvent as D, SmtpTarget, run_smtp_client};
    use mailscope_proto::smtp::client::{Client, ClientOptions, Event as E, Outcome, Stage};
    let implicit = r.proto.implicit_tls();
    let target = SmtpTarget {
        host: plan.address.clone(),
        port: r.port,
        implicit_tls: implicit,
        timeout: plan.timeout,
        local: None,
        proxy: None,
    };
    let mut client = Client::new(ClientOptions {
        helo_name: "mailscope.invalid".into(),
        implicit_tls: implicit,
        starttls: !implicit,
        quit_after: Some(Stage::Ehlo),
        step_timeout_us: plan.step_us(),
        ..ClientOptions::default()
    });
    let run = run_smtp_client(&target, &plan.tls, &mut client, |_, ev| match ev {
        D::Connected {
            peer, elapsed_us, ..
        } => r.on_connected(peer, elapsed_us),
        D::TlsEstablished(report) => r.tls = Some(report),
        D::TlsFailed(e) => r.tls_error = Some(e.to_string()),
        D::Machine(_, ev) => match ev {
            E::ReplyReceived {
                command: None,
                reply,
                ..
            } => r.on_greeting(reply.summary(), matches!(reply.code, 421 | 554)),
            E::CapabilitiesReceived { capabilities, tls } => {
                let list = capabilities.keywords();
                let auth = capabilities.auth_mechanisms();
                if tls {
                    r.caps_after = Some(list);
                    r.auth_after = Some(auth);
                } else {
                    r.starttls_offered = Some(capabilities.has("STARTTLS"));
                    r.caps_before = Some(list);
                    r.auth_before = Some(auth);
                }
            }
            E::FindingRaised(f) => r.findings.push(f),
            E::Finished(Outcome::Failed { reason, .. }) => r.session_failure = Some(reason),
            _ => {}
        },
    })
    .await;
    if let Err(e) = run {
        r.on_session_error(e);
    }
}

/// Is TLS enforced? A second plaintext session: `MAIL FROM:<>` then RSET, and AUTH with a
/// mechanism the server offers (PLAIN if none) cancelled with `*` at the first challenge —
/// one command at a time, no credentials ever sent.
async fn probe_smtp_enforcement(plan: &Plan, r: &mut PortReport) {
    use mailscope_net::smtp::{DriverEvent as D, SmtpTarget, run_smtp_client};
    use mailscope_proto::smtp::client::{Client, ClientOptions, Event as E, RawCommand, Stage};
    let mech = r
        .auth_before
        .as_ref()
        .and_then(|a| a.iter().find(|m| !m.ends_with("-PLUS")).cloned())
        .unwrap_or_else(|| "PLAIN".to_string());
    let raw = |s: &str| RawCommand {
        stage: Stage::FirstEhlo,
        bytes: format!("{s}\r\n").into_bytes(),
    };
    let target = SmtpTarget {
        host: plan.address.clone(),
        port: r.port,
        implicit_tls: false,
        timeout: plan.timeout,
        local: None,
        proxy: None,
    };
    let mut client = Client::new(ClientOptions {
        helo_name: "mailscope.invalid".into(),
        quit_after: Some(Stage::FirstEhlo),
        step_timeout_us: plan.step_us(),
        lax: true,
        raw_commands: vec![
            raw("MAIL FROM:<>"),
            raw("RSET"),
            raw(&format!("AUTH {mech}")),
            raw("*"),
        ],
        ..ClientOptions::default()
    });
    let mut replies: Vec<(String, u16, String)> = Vec::new();
    let _ = run_smtp_client(&target, &plan.tls, &mut client, |_, ev| {
        if let D::Machine(
            _,
            E::ReplyReceived {
                command: Some(c),
                reply,
                ..
            },
        ) = ev
        {
            replies.push((c.to_string(), reply.code, reply.summary()));
        }
    })
    .await;
    // The raw commands' replies, in order, after EHLO's.
    let mut it = replies.iter().skip_while(|(c, ..)| c != "MAIL");
    if let Some((_, _, summary)) = it.next() {
        r.mail_before_tls = Some(summary.clone());
    }
    if let Some((_, _, summary)) = it.find(|(c, ..)| c == "AUTH") {
        r.auth_before_tls = Some((mech, summary.clone()));
    }
}

async fn probe_pop3(plan: &Plan, r: &mut PortReport) {
    use mailscope_net::pop3::{DriverEvent as D, Pop3Target, run_pop3_client};
    use mailscope_proto::pop3::client::{Client, ClientOptions, Event as E, Outcome};
    let implicit = r.proto.implicit_tls();
    let target = Pop3Target {
        host: plan.address.clone(),
        port: r.port,
        implicit_tls: implicit,
        timeout: plan.timeout,
    };
    let mut client = Client::new(ClientOptions {
        implicit_tls: implicit,
        stls: !implicit,
        login: None,
        quit_after: None,
        step_timeout_us: plan.step_us(),
        ..ClientOptions::default()
    });
    let run = run_pop3_client(&target, &plan.tls, &mut client, |_, ev| match ev {
        D::Connected {
            peer, elapsed_us, ..
        } => r.on_connected(peer, elapsed_us),
        D::TlsEstablished(report) => r.tls = Some(report),
        D::TlsFailed(e) => r.tls_error = Some(e.to_string()),
        D::Machine(_, ev) => match ev {
            E::ResponseReceived {
                command,
                status,
                text,
                ..
            } if command == "greeting" => {
                let ok = matches!(status, Some(mailscope_proto::pop3::response::Status::Ok));
                let text = String::from_utf8_lossy(&text).into_owned();
                let shown = format!("{} {text}", if ok { "+OK" } else { "-ERR" });
                r.on_greeting(shown, !ok);
            }
            E::CapabilitiesReceived { tls, capabilities } => {
                let word = |l: &String| {
                    l.split_ascii_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase()
                };
                let sasl: Vec<String> = capabilities
                    .iter()
                    .filter(|l| word(l) == "SASL")
                    .flat_map(|l| l.split_ascii_whitespace().skip(1).map(String::from))
                    .collect();
                let user = capabilities.iter().any(|l| word(l) == "USER");
                let mut auth = sasl;
                if user {
                    auth.push("USER".into());
                }
                if tls {
                    r.caps_after = Some(capabilities);
                    r.auth_after = Some(auth);
                } else {
                    r.starttls_offered = Some(capabilities.iter().any(|l| word(l) == "STLS"));
                    r.plaintext_login_before_tls = Some(user);
                    r.caps_before = Some(capabilities);
                    r.auth_before = Some(auth);
                }
            }
            E::FindingRaised(f) => r.findings.push(f),
            E::Finished(Outcome::Failed { reason, .. }) => r.session_failure = Some(reason),
            _ => {}
        },
    })
    .await;
    if let Err(e) = run {
        r.on_session_error(e);
    }
}

async fn probe_imap(plan: &Plan, r: &mut PortReport) {
    use mailscope_net::imap::{DriverEvent as D, ImapTarget, run_imap_client};
    use mailscope_proto::imap::client::{Client, ClientOptions, Event as E, Outcome};
    let implicit = r.proto.implicit_tls();
    let target = ImapTarget {
        host: plan.address.clone(),
        port: r.port,
        implicit_tls: implicit,
        timeout: plan.timeout,
    };
    let mut client = Client::new(ClientOptions {
        implicit_tls: implicit,
        starttls: !implicit,
        auth: None,
        quit_after: None,
        step_timeout_us: plan.step_us(),
        ..ClientOptions::default()
    });
    let run = run_imap_client(&target, &plan.tls, &mut client, |_, ev| match ev {
        D::Connected {
            peer, elapsed_us, ..
        } => r.on_connected(peer, elapsed_us),
        D::TlsEstablished(report) => r.tls = Some(report),
        D::TlsFailed(e) => r.tls_error = Some(e.to_string()),
        D::Machine(_, ev) => match ev {
            E::ResponseReceived {
                command: None,
                response,
                ..
            } => {
                let refused = response.status.eq_ignore_ascii_case("BYE");
                r.on_greeting(format!("* {} {}", response.status, response.text), refused);
            }
            E::CapabilitiesReceived { capabilities, tls } => {
                let auth: Vec<String> = capabilities
                    .iter()
                    .filter_map(|c| {
                        c.get(..5)
                            .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                            .and_then(|_| c.get(5..))
                            .map(String::from)
                    })
                    .collect();
                let has = |k: &str| capabilities.iter().any(|c| c.eq_ignore_ascii_case(k));
                if tls {
                    r.auth_after = Some(auth);
                    r.caps_after = Some(capabilities);
                } else {
                    r.starttls_offered = Some(has("STARTTLS"));
                    r.plaintext_login_before_tls = Some(!has("LOGINDISABLED"));
                    r.auth_before = Some(auth);
                    r.caps_before = Some(capabilities);
                }
            }
            E::FindingRaised(f) => r.findings.push(f),
            E::Finished(Outcome::Failed { reason, .. }) => r.session_failure = Some(reason),
            _ => {}
        },
    })
    .await;
    if let Err(e) = run {
        r.on_session_error(e);
    }
}

/// Probes one port: the session, then the probe's own findings.
async fn probe_port(plan: &Plan, port: u16, proto: Option<Proto>, insecure: bool) -> PortReport {
    let started = Instant::now();
    let (proto, guessed) = match proto {
        Some(p) => (p, None),
        None => match detect(plan, port).await {
            Ok((p, why)) => (p, Some(why)),
            Err(mut r) => {
                r.elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                add_findings(&mut r, insecure, plan.greeting_timeout);
                return *r;
            }
        },
    };
    let mut r = PortReport::new(port, proto);
    r.guessed = guessed;
    // A hard cap on the whole port, whatever the server does.
    let cap = plan.timeout * 3 + plan.greeting_timeout * 6;
    let session = async {
        match proto {
            Proto::Smtp | Proto::Submission | Proto::Smtps => {
                probe_smtp(plan, &mut r).await;
                if r.starttls_offered == Some(true) && r.state() == "open" {
                    probe_smtp_enforcement(plan, &mut r).await;
                }
            }
            Proto::Pop3 | Proto::Pop3s => probe_pop3(plan, &mut r).await,
            Proto::Imap | Proto::Imaps => probe_imap(plan, &mut r).await,
        }
    };
    let capped = tokio::time::timeout(cap, session).await.is_err();
    if capped {
        r.session_failure = Some(format!(
            "the probe gave up after {:.0} s",
            cap.as_secs_f64()
        ));
    }
    r.elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    add_findings(&mut r, insecure, plan.greeting_timeout);
    r
}

/// The protocol of a port nobody named: what it says first (SMTP `220`/`421`/`554`, POP3
/// `+OK`/`-ERR`, IMAP `* OK`/`* PREAUTH`/`* BYE`); if it says nothing before the greeting
/// timeout, whether it speaks TLS first, and then what it says inside. `Err` is the report of
/// a port that could not be told (closed, silent, unknown greeting).
async fn detect(plan: &Plan, port: u16) -> Result<(Proto, String), Box<PortReport>> {
    use tokio::io::AsyncReadExt as _;
    let mut r = PortReport::new(port, Proto::Smtp);
    r.proto_known = false;
    let first_words = |bytes: &[u8]| -> Option<Proto> {
        use mailscope_proto::greeting::{GreetingProtocol as G, classify_greeting};
        Some(match classify_greeting(bytes)? {
            G::Smtp => Proto::Smtp,
            G::Pop3 => Proto::Pop3,
            G::Imap => Proto::Imap,
        })
    };
    let started = Instant::now();
    let conn = match mailscope_net::connect_tcp(&plan.address, port, plan.timeout).await {
        Ok(c) => c,
        Err(e) => {
            r.on_session_error(mailscope_net::smtp::SessionError::Connect(e));
            return Err(Box::new(r));
        }
    };
    r.on_connected(
        conn.peer,
        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    );
    let mut stream = conn.stream;
    let mut buf = vec![0u8; 512];
    let judge = |r: &mut PortReport, bytes: &[u8]| -> Result<(Proto, String), ()> {
        let text = String::from_utf8_lossy(bytes).trim_end().to_string();
        match first_words(bytes) {
            Some(p) => Ok((p, format!("detected from the greeting {text:?}"))),
            None => {
                r.greeting = Some(if bytes.is_empty() {
                    "(closed without a word)".into()
                } else {
                    text.clone()
                });
                r.session_failure = Some(format!(
                    "the greeting {text:?} is not SMTP, POP3 or IMAP: name the protocol with PORT/LABEL"
                ));
                Err(())
            }
        }
    };
    // A TLS port says nothing in plaintext: after a short wait, try TLS on a second
    // connection; a slow greeter (postscreen's greet pause) still gets the rest of the
    // greeting timeout on the first one.
    let quick = plan.greeting_timeout.min(Duration::from_millis(1500));
    if let Ok(Ok(n)) = tokio::time::timeout(quick, stream.read(&mut buf)).await {
        return judge(&mut r, &buf[..n]).map_err(|()| Box::new(r));
    }
    if let Some(found) = detect_tls(plan, port, &first_words).await {
        return Ok(found);
    }
    let rest = plan.greeting_timeout.saturating_sub(quick);
    if let Ok(Ok(n)) = tokio::time::timeout(rest, stream.read(&mut buf)).await {
        return judge(&mut r, &buf[..n]).map_err(|()| Box::new(r));
    }
    Err(Box::new(r))
}

/// Implicit TLS on a port that was silent in plaintext: the protocol of the greeting inside.
async fn detect_tls(
    plan: &Plan,
    port: u16,
    first_words: &dyn Fn(&[u8]) -> Option<Proto>,
) -> Option<(Proto, String)> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 512];
    let conn = mailscope_net::connect_tcp(&plan.address, port, plan.timeout)
        .await
        .ok()?;
    let plain = mailscope_net::MaybeTlsStream::Plain(conn.stream);
    let (mut tls, _) = plain
        .upgrade(&plan.tls, &plan.address, plan.timeout)
        .await
        .ok()?;
    let n = match tokio::time::timeout(plan.greeting_timeout, tls.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => 0,
    };
    let p = match first_words(&buf[..n])? {
        Proto::Smtp => Proto::Smtps,
        Proto::Pop3 => Proto::Pop3s,
        _ => Proto::Imaps,
    };
    Some((
        p,
        "detected: silent in plaintext, TLS first, then the greeting".into(),
    ))
}

fn add_findings(r: &mut PortReport, insecure: bool, greeting_timeout: Duration) {
    let port = r.port;
    // The machines' findings name no port: add it.
    for f in &mut r.findings {
        f.detail = if f.detail.is_empty() {
            format!("port {port}")
        } else {
            format!("port {port}: {}", f.detail)
        };
    }
    match r.state() {
        "refused" => {
            let g = r.greeting.clone().unwrap_or_default();
            r.findings.push(Finding::new(
                PROBE_GREETING_REFUSED,
                format!("port {port}: {g}"),
            ));
        }
        "no-greeting" => {
            let waited = r
                .connected_at
                .is_some_and(|t| t.elapsed() + Duration::from_millis(50) >= greeting_timeout);
            let why = if waited {
                format!("no greeting within {:.1} s", greeting_timeout.as_secs_f64())
            } else {
                "the server closed the connection without a greeting".to_string()
            };
            r.findings.push(Finding::new(
                PROBE_NO_GREETING,
                format!("port {port}: {why}"),
            ));
        }
        _ => {}
    }
    if let Some(e) = &r.tls_error {
        r.findings
            .push(Finding::new(PROBE_TLS_FAILED, format!("port {port}: {e}")));
    }
    if let Some((mech, reply)) = &r.auth_before_tls
        && reply.starts_with("334")
    {
        r.findings.push(Finding::new(
            PROBE_AUTH_BEFORE_TLS,
            format!("port {port}: AUTH {mech} before STARTTLS got \"{reply}\" (cancelled with *)"),
        ));
    }
    if r.proto == Proto::Submission
        && let Some(reply) = &r.mail_before_tls
        && reply.starts_with('2')
    {
        r.findings.push(Finding::new(
            PROBE_MAIL_BEFORE_TLS,
            format!("port {port}: MAIL FROM:<> before STARTTLS got \"{reply}\""),
        ));
    }
    if r.proto == Proto::Submission && r.starttls_offered == Some(false) {
        r.findings.push(Finding::new(
            PROBE_SUBMISSION_NO_TLS,
            format!("port {port}: the EHLO reply lists no STARTTLS"),
        ));
    }
    if let Some(Verification::Failed { kind, reason }) = r.tls.as_ref().map(|t| &t.verification)
        && !insecure
    {
        let f = Finding::new(
            crate::tls_out::verify_kind(kind),
            format!("port {port}: {reason}"),
        );
        r.findings.push(f);
    }
    if let Some(days) = r.days_to_expiry()
        && (0..30).contains(&days)
    {
        r.findings.push(Finding::new(
            TLS_CERT_EXPIRES_SOON,
            format!("port {port}: the certificate expires in {days} days"),
        ));
    }
}

fn list_or_none(v: &Option<Vec<String>>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.is_empty() => "none".into(),
        Some(v) => v.join(" "),
    }
}

/// A list for the table: at most two entries and how many more.
fn short(v: &Option<Vec<String>>) -> String {
    match v.as_deref() {
        Some([a, b, rest @ ..]) if !rest.is_empty() => format!("{a} {b} +{}", rest.len()),
        _ => list_or_none(v),
    }
}

fn verification_text(v: &Verification) -> (String, Option<String>) {
    match v {
        Verification::Verified => ("verified".into(), None),
        Verification::Failed { reason, .. } => ("failed".into(), Some(reason.clone())),
        Verification::NotPerformed { reason } => ("not-checked".into(), Some(reason.clone())),
    }
}

/// The human text of one port (several lines).
fn port_text(r: &PortReport) -> String {
    let mut lines: Vec<String> = Vec::new();
    if let Some((_, why)) = &r.connect_error {
        lines.push(why.clone());
        return lines.join("\n");
    }
    if let Some(g) = &r.guessed {
        lines.push(format!("protocol {}: {g}", r.proto.name()));
    }
    if let Some(f) = &r.session_failure
        && !r.proto_known
    {
        lines.push(f.clone());
    }
    lines.push(format!(
        "{}{}, connected in {}",
        r.proto_label(),
        r.peer
            .as_deref()
            .map(|p| format!(" at {p}"))
            .unwrap_or_default(),
        r.connect_us.map(ms).unwrap_or_else(|| "-".into())
    ));
    match (&r.greeting, r.state()) {
        (Some(g), "refused") => lines.push(format!("refuses connections ({g})")),
        (Some(g), _) => lines.push(format!(
            "banner after {}: {g}",
            r.banner_us.map(ms).unwrap_or_else(|| "-".into())
        )),
        (None, "no-greeting") => lines.push("no greeting (tarpit or wrong protocol)".into()),
        (None, _) => {}
    }
    if r.caps_before.is_some() {
        lines.push(format!("before TLS: {}", list_or_none(&r.caps_before)));
    }
    if !r.proto.implicit_tls() && r.starttls_offered == Some(false) {
        lines.push("no STARTTLS".into());
    }
    if r.caps_after.is_some() {
        lines.push(format!("after TLS: {}", list_or_none(&r.caps_after)));
    }
    if r.auth_before.is_some() || r.auth_after.is_some() {
        lines.push(format!(
            "AUTH before TLS: {}; after TLS: {}",
            list_or_none(&r.auth_before),
            list_or_none(&r.auth_after)
        ));
    }
    if let Some(reply) = &r.mail_before_tls {
        lines.push(format!(
            "before STARTTLS, MAIL FROM:<> got: {reply} (then RSET)"
        ));
    }
    if let Some((mech, reply)) = &r.auth_before_tls {
        let verdict = if reply.starts_with("334") {
            "AUTH is possible in plaintext"
        } else {
            "TLS enforced for AUTH"
        };
        lines.push(format!(
            "before STARTTLS, AUTH {mech} got: {reply} ({verdict}; cancelled, no credentials sent)"
        ));
    }
    if let Some(t) = &r.tls {
        lines.push(format!(
            "TLS ({}): {} {}",
            r.tls_mode().unwrap_or("starttls"),
            t.version,
            t.cipher_suite
        ));
        if let Some(leaf) = t.chain.first() {
            lines.push(format!(
                "certificate: {}{}{}",
                leaf.subject,
                if leaf.san.is_empty() {
                    String::new()
                } else {
                    format!(", SAN {}", leaf.san.join(" "))
                },
                match (&leaf.not_after, r.days_to_expiry()) {
                    (Some(na), Some(d)) => format!(", expires {} ({d} days)", na.utc),
                    _ => String::new(),
                }
            ));
        }
        let (verdict, reason) = verification_text(&t.verification);
        lines.push(match reason {
            Some(why) => format!("certificate {verdict} for {}: {why}", t.verified_name),
            None => format!("certificate {verdict} for {}", t.verified_name),
        });
    }
    if let Some(e) = &r.tls_error {
        lines.push(format!("TLS failed: {e}"));
    }
    // A missing STARTTLS already said why the session stopped.
    if let Some(f) = &r.session_failure
        && r.starttls_offered != Some(false)
        && r.greeting.is_some()
        && !r.greeting_refused
    {
        lines.push(format!("session: {f}"));
    }
    lines.join("\n")
}

fn port_json(host: &str, address: &str, r: &PortReport) -> Value {
    let tls = r.tls.as_ref().map(|t| {
        let (verdict, reason) = verification_text(&t.verification);
        json!({
            "version": t.version,
            "cipher_suite": t.cipher_suite,
            "key_exchange_group": t.key_exchange_group,
            "sni": t.sni,
            "verified_name": t.verified_name,
            "verification": verdict,
            "verification_reason": reason,
            "days_to_expiry": r.days_to_expiry(),
            "chain": t.chain.iter().map(|c| json!({
                "subject": c.subject,
                "issuer": c.issuer,
                "san": c.san,
                "not_after": c.not_after.as_ref().map(|n| n.rfc3339.clone()),
                "sha256": c.sha256_fingerprint,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "host": host,
        "address": address,
        "port": r.port,
        "protocol": r.proto_known.then(|| r.proto.name()),
        "protocol_guessed": r.guessed,
        "state": r.state(),
        "peer": r.peer,
        "connect_us": r.connect_us,
        "banner_us": r.banner_us,
        "banner": r.greeting,
        "error": r.connect_error.as_ref().map(|(_, e)| e.clone()),
        "starttls": r.starttls_offered,
        "tls_mode": r.tls_mode(),
        "capabilities_before_tls": r.caps_before,
        "capabilities_after_tls": r.caps_after,
        "auth_before_tls": r.auth_before,
        "auth_after_tls": r.auth_after,
        "plaintext_login_before_tls": r.plaintext_login_before_tls,
        "enforcement": (r.mail_before_tls.is_some() || r.auth_before_tls.is_some()).then(|| json!({
            "mail_before_starttls": r.mail_before_tls,
            "auth_before_starttls": r.auth_before_tls.as_ref().map(|(m, reply)| json!({ "mechanism": m, "reply": reply })),
        })),
        "tls": tls,
        "tls_error": r.tls_error,
        "session_failure": r.session_failure,
        "elapsed_us": r.elapsed_us,
    })
}

fn table_row(r: &PortReport) -> String {
    let tls = match (&r.tls, r.tls_mode()) {
        (Some(t), Some("implicit")) => format!("implicit {}", t.version),
        (Some(t), _) => format!("STARTTLS {}", t.version),
        (None, _) if r.tls_error.is_some() => "failed".into(),
        (None, _) if r.starttls_offered == Some(false) => "none".into(),
        (None, _) => "-".into(),
    };
    let auth = if r.auth_before.is_none() && r.auth_after.is_none() {
        "-".to_string()
    } else {
        format!("{} → {}", short(&r.auth_before), short(&r.auth_after))
    };
    format!(
        "{:<6} {:<12} {:<11} {:<18} {:<9} {:<36} {}",
        r.port,
        r.state(),
        r.proto_label(),
        tls,
        r.banner_us.map(ms).unwrap_or_else(|| "-".into()),
        auth,
        r.days_to_expiry()
            .map(|d| format!("{d} d"))
            .unwrap_or_else(|| "-".into())
    )
}

/// Resolves `host` to one address through the check resolver (IP literals as they are).
async fn resolve(out: &CheckOutput, host: &str) -> Result<IpAddr, String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(ip);
    }
    let dns = out.dns();
    if let Some(a) = dns.a(host).await.records().first() {
        return Ok(IpAddr::V4(*a));
    }
    if let Some(a) = dns.aaaa(host).await.records().first() {
        return Ok(IpAddr::V6(*a));
    }
    Err(format!("{host} has no A or AAAA record"))
}

/// Runs `mailscope probe`.
pub async fn run(global: &GlobalArgs, args: &ProbeArgs) -> Result<ExitCode> {
    if let Some(domain) = &args.mx {
        return run_mx(global, args, domain).await;
    }
    let ports = parse_ports(&args.ports).map_err(UsageError)?;
    let timeout = seconds("--timeout", args.timeout)?;
    let greeting_timeout = seconds("--greeting-timeout", args.greeting_timeout)?;
    let host = args
        .host
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_owned();
    if host.is_empty() {
        return Err(UsageError("HOST is empty".into()).into());
    }
    let is_ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok();
    // The handshake always completes (insecure at the TLS layer) so the probe sees what
    // follows it; the verdict is recorded and turned into findings below.
    let tls = TlsClient::new(&TlsClientOptions {
        insecure: true,
        extra_ca_files: args.tls_ca_path.clone(),
        sni: (!is_ip).then(|| host.clone()),
        ..TlsClientOptions::default()
    })
    .map_err(|e| UsageError(e.to_string()))?;

    let mut out = CheckOutput::start(global, "probe", &host, &args.dns)?;
    let address = match resolve(&out, &host).await {
        Ok(ip) => ip,
        Err(why) => {
            out.result("probe", &host, "error", &why, json!({ "host": host }));
            return Ok(out.finish_with(global, ExitCode::CONNECT));
        }
    };
    out.flush_dns();
    let plan = Plan {
        address: address.to_string(),
        timeout,
        greeting_timeout,
        tls,
    };
    let started = Instant::now();
    let reports = join_all(
        ports
            .iter()
            .map(|&(port, proto)| probe_port(&plan, port, proto, args.insecure)),
    )
    .await;
    let total_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);

    out.line(&format!(
        "probe {host} ({address}): {} port(s) in {}",
        reports.len(),
        ms(total_us)
    ));
    out.line(&format!(
        "{:<6} {:<12} {:<11} {:<18} {:<9} {:<36} CERT",
        "PORT", "STATE", "PROTOCOL", "TLS", "BANNER", "AUTH before → after TLS"
    ));
    for r in &reports {
        out.line(&table_row(r));
    }
    out.line("");
    let display = if address.is_ipv6() {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    let subject_host = if is_ip {
        display.as_str()
    } else {
        host.as_str()
    };
    for r in &reports {
        let subject = format!("{subject_host}:{}", r.port);
        out.result(
            "probe",
            &subject,
            r.state(),
            &port_text(r),
            port_json(&host, &address.to_string(), r),
        );
        for f in &r.findings {
            out.finding(f);
        }
    }
    Ok(out.finish(global))
}

/// At most this many MX hosts are probed.
const MAX_MX_HOSTS: usize = 10;
/// At most this many addresses of one MX host are probed.
const MAX_MX_ADDRESSES: usize = 4;

/// Every address of `host` (A, then AAAA), at most [`MAX_MX_ADDRESSES`].
async fn resolve_all(out: &CheckOutput, host: &str) -> Result<Vec<IpAddr>, String> {
    let dns = out.dns();
    let (a, aaaa) = tokio::join!(dns.a(host), dns.aaaa(host));
    let mut ips: Vec<IpAddr> = a.records().iter().map(|x| IpAddr::V4(*x)).collect();
    ips.extend(aaaa.records().iter().map(|x| IpAddr::V6(*x)));
    ips.truncate(MAX_MX_ADDRESSES);
    if ips.is_empty() {
        return Err(format!("{host} has no A or AAAA record"));
    }
    Ok(ips)
}

/// `--mx DOMAIN`: every MX host (best first) at each of its addresses, then what differs
/// between them.
async fn run_mx(global: &GlobalArgs, args: &ProbeArgs, domain: &str) -> Result<ExitCode> {
    let specs_given = args.ports != ["25", "465", "587", "110", "995", "143", "993"];
    let ports = if specs_given {
        parse_ports(&args.ports).map_err(UsageError)?
    } else {
        vec![(25, Some(Proto::Smtp))]
    };
    let timeout = seconds("--timeout", args.timeout)?;
    let greeting_timeout = seconds("--greeting-timeout", args.greeting_timeout)?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    mailscope_mailauth::dns::check_name(&domain)
        .map_err(|why| UsageError(format!("--mx {domain:?}: {why}")))?;
    let mut out = CheckOutput::start(global, "probe", &domain, &args.dns)?;
    let dns = out.dns();
    let hosts: Vec<String> = match dns.mx(&domain).await {
        mailscope_mailauth::dns::Answer::Records(mx) => {
            let mut names: Vec<String> = Vec::new();
            for (_, h) in mx {
                if !h.is_empty() && !names.contains(&h) {
                    names.push(h);
                }
            }
            names
        }
        mailscope_mailauth::dns::Answer::NoData => vec![domain.clone()],
        other => {
            let why = format!("MX look-up for {domain}: {}", other.outcome());
            out.result("probe", &domain, "error", &why, json!({ "domain": domain }));
            return Ok(out.finish_with(global, ExitCode::CONNECT));
        }
    };
    if hosts.is_empty() {
        out.result(
            "probe",
            &domain,
            "none",
            "null MX: the domain accepts no mail",
            json!({ "domain": domain }),
        );
        return Ok(out.finish(global));
    }
    if hosts.len() > MAX_MX_HOSTS {
        out.note(&format!(
            "probing the first {MAX_MX_HOSTS} of {} MX hosts",
            hosts.len()
        ));
    }
    let hosts: Vec<String> = hosts.into_iter().take(MAX_MX_HOSTS).collect();
    let mut plans = Vec::new();
    for h in &hosts {
        match resolve_all(&out, h).await {
            Ok(ips) => {
                let several = ips.len() > 1;
                for ip in ips {
                    let tls = TlsClient::new(&TlsClientOptions {
                        insecure: true,
                        extra_ca_files: args.tls_ca_path.clone(),
                        sni: Some(h.clone()),
                        ..TlsClientOptions::default()
                    })
                    .map_err(|e| UsageError(e.to_string()))?;
                    // One address: the host's name; several: name and address.
                    let label = if several {
                        format!("{h} ({ip})")
                    } else {
                        h.clone()
                    };
                    plans.push((
                        label,
                        ip,
                        Plan {
                            address: ip.to_string(),
                            timeout,
                            greeting_timeout,
                            tls,
                        },
                    ));
                }
            }
            Err(why) => out.result("probe", h, "error", &why, json!({ "host": h })),
        }
    }
    out.flush_dns();
    let started = Instant::now();
    let all = join_all(plans.iter().map(|(_, _, plan)| {
        join_all(
            ports
                .iter()
                .map(|&(port, proto)| probe_port(plan, port, proto, args.insecure)),
        )
    }))
    .await;
    out.line(&format!(
        "probe --mx {domain}: {} MX host(s) at {} address(es), {} port(s) each, in {}",
        hosts.len(),
        plans.len(),
        ports.len(),
        ms(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
    ));
    out.line(&format!(
        "{:<28} {:<6} {:<12} {:<11} {:<18} {:<9} {:<36} CERT",
        "HOST", "PORT", "STATE", "PROTOCOL", "TLS", "BANNER", "AUTH before → after TLS"
    ));
    for ((h, _, _), reports) in plans.iter().zip(&all) {
        for r in reports {
            out.line(&format!("{h:<28} {}", table_row(r)));
        }
    }
    out.line("");
    for ((h, ip, _), reports) in plans.iter().zip(&all) {
        for r in reports {
            out.result(
                "probe",
                &format!("{h}:{}", r.port),
                r.state(),
                &port_text(r),
                port_json(h, &ip.to_string(), r),
            );
            for f in &r.findings {
                out.finding(f);
            }
        }
    }
    let named: Vec<(&str, &[PortReport])> = plans
        .iter()
        .zip(&all)
        .map(|((h, _, _), r)| (h.as_str(), r.as_slice()))
        .collect();
    for f in mx_inconsistencies(&named) {
        out.finding(&f);
    }
    Ok(out.finish(global))
}

/// Where MX hosts differ on the same port: senders get different security depending on
/// which host they reach.
fn mx_inconsistencies(hosts: &[(&str, &[PortReport])]) -> Vec<Finding> {
    let mut out = Vec::new();
    if hosts.len() < 2 {
        return out;
    }
    let ports: Vec<u16> = hosts
        .first()
        .map(|(_, r)| r.iter().map(|p| p.port).collect())
        .unwrap_or_default();
    type Fact = fn(&PortReport) -> Option<String>;
    let facts: [(&str, Fact); 4] = [
        ("state", |r| Some(r.state().to_string())),
        ("STARTTLS", |r| {
            r.starttls_offered
                .map(|b| if b { "offered" } else { "not offered" }.to_string())
        }),
        ("TLS", |r| {
            Some(
                r.tls
                    .as_ref()
                    .map_or("none".to_string(), |t| t.version.clone()),
            )
        }),
        ("certificate", |r| {
            r.tls.as_ref().map(|t| match &t.verification {
                Verification::Verified => "verified".to_string(),
                Verification::Failed { .. } => "does not verify".to_string(),
                Verification::NotPerformed { .. } => "not checked".to_string(),
            })
        }),
    ];
    for port in ports {
        for (what, fact) in &facts {
            let values: Vec<(String, String)> = hosts
                .iter()
                .filter_map(|(h, rs)| {
                    let r = rs.iter().find(|r| r.port == port)?;
                    Some((h.to_string(), fact(r)?))
                })
                .collect();
            let first = values.first().map(|(_, v)| v.clone());
            if values.iter().any(|(_, v)| Some(v) != first.as_ref()) {
                let list: Vec<String> = values.iter().map(|(h, v)| format!("{h}: {v}")).collect();
                out.push(Finding::new(
                    PROBE_MX_INCONSISTENT,
                    format!("port {port}, {what}: {}", list.join("; ")),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn ports_parse_with_and_without_labels() {
        let p = parse_ports(&specs("25,2525/smtp,993,12110/POP3")).unwrap();
        assert_eq!(
            p,
            vec![
                (25, Some(Proto::Smtp)),
                (2525, Some(Proto::Smtp)),
                (993, Some(Proto::Imaps)),
                (12110, Some(Proto::Pop3))
            ]
        );
        // No label, no usual protocol: detected at probe time.
        assert_eq!(parse_ports(&specs("2525")).unwrap(), [(2525, None)]);
        assert!(parse_ports(&specs("25/http")).is_err());
        assert!(parse_ports(&specs("25,25/smtp")).is_err());
        assert!(parse_ports(&specs("0")).is_err());
    }
}
