//! `mailscope pop3`: wires the CLI options to the POP3 client machine and the async driver,
//! and renders what happens. No POP3 logic lives here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mailscope_net::pop3::{DriverEvent, Pop3Target, SessionError, now, run_pop3_client};
use mailscope_net::{TlsClient, TlsClientOptions, TlsReport, parse_server};
use mailscope_proto::pop3::client::{
    Action, Client, ClientOptions, Event, Login, MsgSet, Outcome, Part, Stage,
};
use mailscope_proto::pop3::response::ResponseLimits;
use mailscope_proto::sasl::{Credentials, Mechanism};
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::output::Reporter;
use crate::tls_out::{report_tls, report_tls_failure, tls_json};
use crate::{ExitCode, random_hex};

pub const POP3_EXAMPLES: &str = "\
Examples:
  mailscope pop3 --server pop.example.net --tls --user alice
  mailscope pop3 --server pop.example.net:995 --tls-on-connect --user alice --list
  mailscope pop3 --server pop.example.net --tls --user alice --auth SCRAM-SHA-256 --quit-after auth
  mailscope pop3 --server pop.example.net --tls --user alice --fetch 1,3:5,* --output mail/
  mailscope pop3 --server pop.example.net --tls --user alice --delete 1 --yes
  mailscope pop3 --server pop.example.net --quit-after capa --json | jq .type

Exit codes:
  0 ok, 1 usage, 2 connect failed, 6 connection closed or timed out, 10 --fail-on matched,
  21 greeting refused, 23 a mailbox command (STAT, LIST, UIDL, TOP, RETR, DELE, QUIT) refused,
  28 login failed, 29 TLS failed or STLS not offered";

#[derive(Debug, Args)]
pub struct Pop3Args {
    /// Server to connect to: host, host:port, [v6]:port (default port 110, 995 with
    /// --tls-on-connect).
    #[arg(short = 's', long, value_name = "HOST[:PORT]")]
    pub server: String,
    /// Port (overrides the one in --server).
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Upgrade with STLS; fail (exit 29) if the server does not offer it.
    #[arg(long, visible_alias = "stls", conflicts_with = "tls_on_connect")]
    pub tls: bool,
    /// Implicit TLS from the first byte (POP3S, port 995).
    #[arg(long, visible_alias = "tlsc")]
    pub tls_on_connect: bool,
    /// Also trust the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_path: Vec<PathBuf>,
    /// Continue when the certificate does not verify (the failure is still reported).
    #[arg(long)]
    pub insecure: bool,
    /// Name for SNI and certificate checks (default: the server's host name).
    #[arg(long, value_name = "NAME")]
    pub tls_sni: Option<String>,
    /// User name; without it mailscope does not log in (capabilities only).
    #[arg(long, visible_alias = "user", value_name = "USER")]
    pub auth_user: Option<String>,
    /// Password (visible to other users in `ps`; prefer MAILSCOPE_PASSWORD or a file).
    #[arg(long, visible_alias = "ap", value_name = "PASSWORD")]
    pub auth_password: Option<String>,
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "auth_password")]
    pub auth_password_file: Option<PathBuf>,
    /// Log in with APOP (MD5 of the greeting's timestamp and the password).
    #[arg(long, conflicts_with = "auth")]
    pub apop: bool,
    /// Log in with AUTH and this SASL mechanism (default: USER/PASS).
    #[arg(short = 'a', long, value_name = "MECH")]
    pub auth: Option<String>,
    /// Authorization identity (authzid) for PLAIN and SCRAM.
    #[arg(long, value_name = "ID")]
    pub auth_authzid: Option<String>,
    /// Allow sending a password without TLS to a server that is not on loopback.
    #[arg(long)]
    pub insecure_auth_plaintext: bool,
    /// List the messages: number, size and unique id (LIST, UIDL).
    #[arg(long)]
    pub list: bool,
    /// Fetch these messages: a set like 1,3:5,* (* is the last message).
    #[arg(long, value_name = "SET")]
    pub fetch: Option<String>,
    /// Which part to fetch: header (TOP n 0), body or full (RETR n).
    #[arg(long, value_name = "PART", default_value = "full", value_parser = ["header", "body", "full"])]
    pub part: String,
    /// Save fetched bytes exactly: to FILE (one message) or into DIR (one file per message,
    /// named by number); default: shown on the terminal.
    #[arg(long, value_name = "FILE|DIR", requires = "fetch")]
    pub output: Option<PathBuf>,
    /// Delete these messages (DELE); needs --yes.
    #[arg(long, value_name = "SET")]
    pub delete: Option<String>,
    /// Confirm --delete.
    #[arg(long)]
    pub yes: bool,
    /// Stop after this stage (exit 0): connect, greeting, capa, tls, auth.
    #[arg(long, value_name = "STAGE", value_parser = parse_stage)]
    pub quit_after: Option<Stage>,
    /// Seconds to wait for the connection and for each response.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub timeout: f64,
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::from_name(s).ok_or_else(|| {
        format!(
            "unknown stage {s:?}; one of {}",
            Stage::ALL
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(crate::UsageError(msg))
}

pub async fn run(global: &GlobalArgs, args: &Pop3Args) -> Result<ExitCode> {
    let default_port = if args.tls_on_connect { 995 } else { 110 };
    let (host, parsed_port) =
        parse_server(&args.server, default_port).map_err(|e| usage(e.to_string()))?;
    let port = args.port.unwrap_or(parsed_port);
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 86_400.0) {
        return Err(usage(format!(
            "--timeout must be between 0 and 86400 seconds, not {}",
            args.timeout
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let part = match args.part.as_str() {
        "header" => Part::Header,
        "body" => Part::Body,
        _ => Part::Full,
    };
    let mut actions = Vec::new();
    if args.list {
        actions.push(Action::List);
    }
    if let Some(set) = &args.fetch {
        let set = MsgSet::parse(set).map_err(|e| usage(format!("--fetch: {e}")))?;
        actions.push(Action::Fetch(set, part));
    }
    if let Some(set) = &args.delete {
        if !args.yes {
            return Err(usage(
                "--delete removes mail from the server; add --yes to confirm".into(),
            ));
        }
        let set = MsgSet::parse(set).map_err(|e| usage(format!("--delete: {e}")))?;
        actions.push(Action::Delete(set));
    }
    if (!actions.is_empty() || args.apop || args.auth.is_some()) && args.auth_user.is_none() {
        return Err(usage("logging in needs --auth-user (alias --user)".into()));
    }
    let login = match &args.auth_user {
        None => None,
        Some(user) if args.quit_after.is_some_and(|s| s < Stage::Auth) => {
            let _ = user;
            None
        }
        Some(user) => {
            let password = crate::credentials::password(
                args.auth_password.as_ref(),
                args.auth_password_file.as_ref(),
                "POP3 login",
            )?;
            Some(if args.apop {
                Login::Apop {
                    user: user.clone(),
                    password,
                }
            } else if let Some(mech) = &args.auth {
                let mechanism = Mechanism::from_name(mech).ok_or_else(|| {
                    usage(format!(
                        "unknown AUTH mechanism {mech:?}; mailscope speaks {}",
                        Mechanism::ALL
                            .iter()
                            .map(|m| m.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                let mut credentials = Credentials::new(user.clone(), password.into_inner());
                if let Some(z) = &args.auth_authzid {
                    credentials = credentials.with_authzid(z.clone());
                }
                Login::Sasl {
                    mechanism,
                    credentials,
                    client_nonce: random_hex(18),
                }
            } else {
                Login::UserPass {
                    user: user.clone(),
                    password,
                }
            })
        }
    };

    let tls_opts = TlsClientOptions {
        insecure: args.insecure,
        extra_ca_files: args.tls_ca_path.clone(),
        sni: args.tls_sni.clone(),
        alpn: Vec::new(),
        keylog: None,
        keylog_from_env: true,
        versions: Vec::new(),
        cipher_suites: Vec::new(),
        client_cert: None,
    };
    let tls = TlsClient::new(&tls_opts).map_err(|e| usage(e.to_string()))?;
    let mut rep = Reporter::for_client(global);
    rep.session_started(
        "pop3",
        &host,
        port,
        args.tls_on_connect,
        args.tls,
        args.quit_after.map(|s| s.name()),
        tls.keylog_path(),
    );
    let target = Pop3Target {
        host: host.clone(),
        port,
        implicit_tls: args.tls_on_connect,
        timeout,
    };
    let opts = ClientOptions {
        implicit_tls: args.tls_on_connect,
        stls: args.tls,
        login,
        allow_plaintext_auth: args.insecure_auth_plaintext,
        quit_after: args.quit_after,
        actions,
        limits: ResponseLimits::default(),
        step_timeout_us: u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX),
    };
    let mut client = Client::new(opts);
    let mut st = State {
        output: args.output.clone(),
        ..State::default()
    };
    let result = run_pop3_client(&target, &tls, &mut client, |c, ev| {
        on_event(&mut rep, &mut st, c, ev);
    })
    .await;
    let code = match result {
        Err(SessionError::Connect(e)) => {
            rep.error(now(), &e.to_string());
            st.outcome = Some(("error".into(), Some("connect".into()), e.to_string()));
            ExitCode::CONNECT
        }
        Err(SessionError::ImplicitTls(e)) => {
            rep.error(now(), &e.to_string());
            rep.event("tls_failed", now(), json!({ "reason": e.to_string() }));
            st.outcome = Some(("failed".into(), Some("tls".into()), e.to_string()));
            ExitCode(29)
        }
        Ok(()) => st.exit,
    };
    rep.transcript(client.transcript());
    st.exit = code;
    summary(&mut rep, &st, &client, &host, port);
    let mut code = code;
    if code.0 == 0
        && global
            .fail_on
            .is_some_and(|t| rep.max_severity().is_some_and(|max| max >= t.severity()))
    {
        code = ExitCode::FINDINGS;
    }
    let (outcome, step, reason) =
        st.outcome
            .clone()
            .unwrap_or(("completed".into(), None, String::new()));
    rep.event(
        "session_ended",
        now(),
        json!({ "outcome": outcome, "step": step, "reason": reason, "exit_code": code.0 }),
    );
    Ok(code)
}

#[derive(Default)]
struct State {
    exit: ExitCode,
    output: Option<PathBuf>,
    peer: Option<String>,
    connect_us: Option<u64>,
    tls: Option<TlsReport>,
    greeting: String,
    auth: Option<String>,
    latencies: Vec<(String, u64)>,
    fetched: usize,
    outcome: Option<(String, Option<String>, String)>,
}

fn on_event(rep: &mut Reporter, st: &mut State, c: &Client, ev: DriverEvent) {
    let upto = match &ev {
        DriverEvent::Machine(pos, _) => *pos,
        _ => usize::MAX,
    };
    rep.transcript_upto(c.transcript(), upto);
    let at = now();
    match ev {
        DriverEvent::Connected {
            peer,
            local,
            elapsed_us,
            failed_attempts,
        } => {
            rep.connected(at, peer, local, elapsed_us, &failed_attempts);
            st.peer = Some(peer.to_string());
            st.connect_us = Some(elapsed_us);
        }
        DriverEvent::TlsEstablished(r) => {
            report_tls(rep, &r);
            st.tls = Some(*r);
        }
        DriverEvent::TlsFailed(e) => report_tls_failure(rep, &e),
        DriverEvent::Machine(_, ev) => match ev {
            Event::ResponseReceived {
                command,
                code,
                latency_us,
                ..
            } => {
                if command != "greeting" {
                    st.latencies.push((command, latency_us));
                }
                if let Some(code) = code {
                    let meaning = code.meaning().unwrap_or("an extended response code");
                    rep.note(at, &format!("[{}]: {meaning}", code.code));
                }
            }
            Event::GreetingReceived {
                text,
                apop_timestamp,
            } => {
                st.greeting = String::from_utf8_lossy(&text).into_owned();
                if let Some(ts) = apop_timestamp {
                    rep.note(at, &format!("greeting offers APOP (timestamp {ts})"));
                }
            }
            Event::CapabilitiesReceived { tls, capabilities } => {
                rep.note(
                    at,
                    &format!(
                        "capabilities{}: {}",
                        if tls { " (TLS)" } else { "" },
                        capabilities.join(", ")
                    ),
                );
                rep.event(
                    "capabilities",
                    at,
                    json!({ "tls": tls, "greeting": st.greeting, "extensions": capabilities }),
                );
            }
            Event::StartTlsRequested => rep.note(at, "starting TLS (STLS)"),
            Event::Authenticated {
                method,
                server_verified,
            } => {
                rep.note(at, &format!("logged in ({method})"));
                rep.event(
                    "authenticated",
                    at,
                    json!({ "mechanism": method, "server_verified": server_verified }),
                );
                st.auth = Some(method);
            }
            Event::MailboxStat { count, size } => {
                rep.note(at, &format!("mailbox: {count} messages, {size} octets"));
            }
            Event::Listing(entries) => {
                rep.note(at, &format!("{} messages:", entries.len()));
                for (n, size, uid) in entries {
                    rep.note(
                        at,
                        &format!("  {n:>6} {size:>10} {}", uid.as_deref().unwrap_or("-")),
                    );
                }
            }
            Event::MessageRetrieved {
                number,
                part,
                bytes,
            } => save(rep, st, number, part, &bytes),
            Event::Deleted(n) => rep.note(at, &format!("message {n} marked for deletion")),
            Event::FindingRaised(f) => rep.finding(at, &f),
            Event::Note(n) => rep.note(at, &n),
            Event::Finished(o) => {
                let (code, o) = match o {
                    Outcome::Completed => (ExitCode(0), ("completed".into(), None, String::new())),
                    Outcome::StoppedAfter(s) => (
                        ExitCode(0),
                        (
                            "stopped".into(),
                            Some(s.name().into()),
                            format!("stopped after {} (--quit-after)", s.name()),
                        ),
                    ),
                    Outcome::Failed { step, reason } => {
                        rep.error(at, &reason);
                        (
                            ExitCode(step.exit_code()),
                            ("failed".into(), Some(step.name().into()), reason),
                        )
                    }
                };
                st.exit = code;
                st.outcome = Some(o);
            }
        },
    }
}

/// Writes a fetched message: exactly its bytes, to --output or to the terminal.
fn save(rep: &mut Reporter, st: &mut State, number: u32, part: Part, bytes: &[u8]) {
    let at = now();
    let bytes = match part {
        Part::Body => {
            let cut = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
                .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
                .unwrap_or(bytes.len());
            &bytes[cut..]
        }
        _ => bytes,
    };
    st.fetched += 1;
    match &st.output {
        Some(dest) => {
            let path = if dest.is_dir() {
                dest.join(format!("{number}.eml"))
            } else {
                if st.fetched > 1 {
                    rep.note(
                        at,
                        &format!(
                            "{} is not a directory: message {number} appended",
                            dest.display()
                        ),
                    );
                }
                dest.clone()
            };
            let res = if st.fetched > 1 && !dest.is_dir() {
                append(&path, bytes)
            } else {
                std::fs::write(&path, bytes)
            };
            match res {
                Ok(()) => rep.note(
                    at,
                    &format!(
                        "message {number}: {} octets written to {}",
                        bytes.len(),
                        path.display()
                    ),
                ),
                Err(e) => rep.error(at, &format!("cannot write {}: {e}", path.display())),
            }
        }
        None => {
            rep.note(at, &format!("message {number}: {} octets", bytes.len()));
            rep.line(&String::from_utf8_lossy(bytes));
        }
    }
}

fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(bytes)
}

fn summary(rep: &mut Reporter, st: &State, c: &Client, host: &str, port: u16) {
    let mut lines = vec!["=== summary".to_string()];
    lines.push(format!(
        "  server      {host} port {port}{}",
        st.peer
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default()
    ));
    match &st.tls {
        Some(t) => lines.push(format!("  tls         {} {}", t.version, t.cipher_suite)),
        None => lines.push("  tls         none (plaintext session)".into()),
    }
    if let Some(caps) = c.capabilities() {
        lines.push(format!("  capa        {}", caps.join(", ")));
    }
    if let Some(a) = &st.auth {
        lines.push(format!("  login       {a}"));
    }
    if let Some((n, size)) = c.stat() {
        lines.push(format!("  mailbox     {n} messages, {size} octets"));
    }
    let mut counts = [0usize; 4];
    for f in rep.findings() {
        counts[f.severity as usize] += 1;
    }
    lines.push(format!(
        "  findings    {} critical, {} error, {} warning, {} info",
        counts[3], counts[2], counts[1], counts[0]
    ));
    let result = match &st.outcome {
        Some((o, step, reason)) if o == "failed" || o == "error" => format!(
            "FAILED at {}: {reason} (exit {})",
            step.as_deref().unwrap_or("?"),
            st.exit.0
        ),
        Some((o, _, reason)) if o == "stopped" => format!("ok, {reason}"),
        _ => "ok".into(),
    };
    lines.push(format!("  result      {result}"));
    rep.line(&lines.join("\n"));
    rep.event(
        "summary",
        now(),
        json!({
            "server": host, "port": port, "peer": st.peer,
            "tls": st.tls.as_ref().map(tls_json),
            "extensions": c.capabilities(),
            "auth": st.auth,
            "latency_us": st.latencies.iter().map(|(v, us)| json!({"command": v, "us": us})).collect::<Vec<_>>(),
            "connect_us": st.connect_us,
            "findings": { "critical": counts[3], "error": counts[2], "warning": counts[1], "info": counts[0] },
        }),
    );
}
