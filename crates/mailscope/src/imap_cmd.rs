//! `mailscope imap`: an IMAP session with every byte shown — capabilities before and after
//! TLS, LOGIN or AUTHENTICATE, and mailbox actions (LIST, STATUS, FETCH, APPEND, IDLE).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mailscope_net::imap::{DriverEvent, ImapTarget, run_imap_client};
use mailscope_net::smtp::{SessionError, now};
use mailscope_net::{TlsClient, TlsClientOptions, parse_server};
use mailscope_proto::imap::client::{
    AuthOptions, Client, ClientOptions, Event, Outcome, Part, Stage,
};
use mailscope_proto::sasl::{Credentials, Mechanism};
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::output::{Reporter, finding_json};
use crate::tls_out::{report_tls, report_tls_failure};
use crate::{ExitCode, random_hex};

pub const IMAP_EXAMPLES: &str = "\
Exit codes:
  0 success (also an intended --quit-after stop), 1 usage error, 2 connect failed,
  6 connection closed unexpectedly, 21 greeting, 22 CAPABILITY, 28 login (LOGIN/AUTHENTICATE),
  29 TLS, 30 mailbox (SELECT/EXAMINE/STATUS), 31 another command refused (LIST, FETCH, APPEND,
  SEARCH, IDLE), 10 completed with a finding at or above --fail-on.

Examples:
  mailscope imap --server imap.example.net --tls --quit-after capa
  mailscope imap --server imap.example.net:993 --tls-on-connect --user alice
  mailscope imap --server imap.example.net --tls --user alice --auth SCRAM-SHA-256 --list --status
  mailscope imap --server imap.example.net --tls --user alice --fetch 1:3 --part header
  mailscope imap --server imap.example.net --tls --user alice --fetch 42 --uid --output msg.eml
  mailscope imap --server 127.0.0.1:143 --user alice --append msg.eml --json";

#[derive(Debug, Args)]
pub struct ImapArgs {
    /// Server, with an optional port (default 143, or 993 with --tls-on-connect).
    #[arg(short = 's', long, value_name = "HOST[:PORT]")]
    pub server: String,
    /// Port (overrides the one in --server).
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Upgrade with STARTTLS (required: the session fails if it cannot).
    #[arg(long, visible_alias = "starttls", conflicts_with = "tls_on_connect")]
    pub tls: bool,
    /// Implicit TLS from the first byte (port 993).
    #[arg(long, visible_alias = "tlsc")]
    pub tls_on_connect: bool,
    /// Extra trust anchors (PEM file).
    #[arg(long, value_name = "FILE")]
    pub tls_ca_path: Vec<PathBuf>,
    /// Do not fail on an invalid certificate (the verdict is still reported).
    #[arg(long)]
    pub insecure: bool,
    /// The user to log in as.
    #[arg(
        long,
        visible_alias = "user",
        visible_alias = "au",
        value_name = "USER"
    )]
    pub auth_user: Option<String>,
    /// The password (visible in the process list: prefer --auth-password-file or
    /// MAILSCOPE_PASSWORD).
    #[arg(long, visible_alias = "ap", value_name = "PASSWORD")]
    pub auth_password: Option<String>,
    /// Read the password from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "auth_password")]
    pub auth_password_file: Option<PathBuf>,
    /// Authorization identity for SASL (log in as someone else).
    #[arg(long, value_name = "ID")]
    pub auth_authzid: Option<String>,
    /// AUTHENTICATE with this SASL mechanism instead of LOGIN.
    #[arg(short = 'a', long, value_name = "MECH")]
    pub auth: Option<String>,
    /// Allow a plaintext password to a non-loopback server without TLS.
    #[arg(long)]
    pub insecure_auth_plaintext: bool,
    /// The mailbox for SELECT, STATUS, FETCH and APPEND.
    #[arg(long, default_value = "INBOX", value_name = "NAME")]
    pub mailbox: String,
    /// EXAMINE (read-only) instead of SELECT.
    #[arg(long)]
    pub examine: bool,
    /// List mailboxes (LIST "" "*").
    #[arg(long)]
    pub list: bool,
    /// STATUS of the mailbox.
    #[arg(long)]
    pub status: bool,
    /// SEARCH ALL in the mailbox.
    #[arg(long)]
    pub search: bool,
    /// Send ID and NAMESPACE.
    #[arg(long)]
    pub id: bool,
    /// FETCH a sequence set (1,3:5,*).
    #[arg(long, value_name = "SET")]
    pub fetch: Option<String>,
    /// The set is UIDs (UID FETCH).
    #[arg(long, requires = "fetch")]
    pub uid: bool,
    /// Which part to fetch.
    #[arg(long, default_value = "full", value_parser = ["header", "body", "full"])]
    pub part: String,
    /// Save fetched bytes exactly: to FILE (one message) or into DIR (one file per message).
    #[arg(long, value_name = "FILE|DIR", requires = "fetch")]
    pub output: Option<PathBuf>,
    /// APPEND this file to the mailbox, byte for byte.
    #[arg(long, value_name = "FILE")]
    pub append: Option<PathBuf>,
    /// IDLE for this many seconds and report what arrives.
    #[arg(long, value_name = "SECONDS")]
    pub idle: Option<f64>,
    /// Stop (LOGOUT) after this stage: connect, greeting, capa, tls, auth, select.
    #[arg(long, value_name = "STAGE", value_parser = parse_stage)]
    pub quit_after: Option<Stage>,
    /// Seconds to wait for the connection and each response.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub timeout: f64,
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::from_name(s).ok_or_else(|| {
        format!(
            "unknown stage {s:?}; one of {}",
            Stage::ALL.map(|s| s.name()).join(", ")
        )
    })
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(crate::UsageError(msg))
}

pub async fn run(global: &GlobalArgs, args: &ImapArgs) -> Result<ExitCode> {
    let default_port = if args.tls_on_connect { 993 } else { 143 };
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
    let idle_us = match args.idle {
        Some(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Some((s * 1e6) as u64),
        Some(s) => return Err(usage(format!("--idle {s}: 0 to 86400 seconds"))),
        None => None,
    };
    let auth = match &args.auth_user {
        None => {
            if args.auth.is_some() {
                return Err(usage("--auth needs --auth-user".into()));
            }
            None
        }
        Some(user) => {
            let mechanism = match &args.auth {
                None => None,
                Some(m) => Some(Mechanism::from_name(m).ok_or_else(|| {
                    usage(format!(
                        "unknown SASL mechanism {m:?}; mailscope speaks {}",
                        Mechanism::PREFERENCE
                            .iter()
                            .map(|m| m.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?),
            };
            let mut credentials = Credentials::new(
                user.clone(),
                crate::credentials::password(
                    args.auth_password.as_ref(),
                    args.auth_password_file.as_ref(),
                    "IMAP login",
                )?
                .into_inner(),
            );
            if let Some(z) = &args.auth_authzid {
                credentials = credentials.with_authzid(z.clone());
            }
            Some(AuthOptions {
                mechanism,
                credentials,
                client_nonce: random_hex(18),
            })
        }
    };
    let append = match &args.append {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| usage(format!("cannot read --append {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let opts = ClientOptions {
        implicit_tls: args.tls_on_connect,
        starttls: args.tls,
        auth,
        allow_plaintext_auth: args.insecure_auth_plaintext,
        quit_after: args.quit_after,
        id: args.id,
        namespace: args.id,
        list: args.list,
        mailbox: args.mailbox.clone(),
        examine: args.examine,
        select: false,
        status: args.status,
        search: args.search,
        fetch: args.fetch.clone(),
        uid: args.uid,
        part: match args.part.as_str() {
            "header" => Part::Header,
            "body" => Part::Body,
            _ => Part::Full,
        },
        append,
        idle_us,
        step_timeout_us: u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX),
        ..ClientOptions::default()
    };
    opts.validate().map_err(usage)?;

    let tls = TlsClient::new(&TlsClientOptions {
        insecure: args.insecure,
        extra_ca_files: args.tls_ca_path.clone(),
        keylog_from_env: true,
        ..TlsClientOptions::default()
    })
    .map_err(|e| usage(e.to_string()))?;

    let mut rep = Reporter::for_client(global);
    rep.session_started(
        "imap",
        &host,
        port,
        args.tls_on_connect,
        args.tls,
        args.quit_after.map(|s| s.name()),
        tls.keylog_path(),
    );
    let target = ImapTarget {
        host: host.clone(),
        port,
        implicit_tls: args.tls_on_connect,
        timeout,
    };
    let mut client = Client::new(opts);
    let mut st = State::default();
    let result = run_imap_client(&target, &tls, &mut client, |c, ev| {
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
    if let Some(out) = &args.output {
        save_fetched(&mut rep, out, &st.fetched);
    }
    summary(&mut rep, &st, &client);
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
    outcome: Option<(String, Option<String>, String)>,
    caps: Vec<String>,
    tls: Option<String>,
    mailbox: Option<String>,
    fetched: Vec<(u32, Option<u32>, Vec<u8>)>,
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
        } => {
            rep.connected(at, peer, local, elapsed_us, &[]);
        }
        DriverEvent::TlsEstablished(r) => {
            report_tls(rep, &r);
            st.tls = Some(format!("{} {}", r.version, r.cipher_suite));
        }
        DriverEvent::TlsFailed(e) => report_tls_failure(rep, &e),
        DriverEvent::Machine(_, ev) => match ev {
            Event::CapabilitiesReceived { capabilities, tls } => {
                rep.note(
                    at,
                    &format!(
                        "capabilities{}: {}",
                        if tls { " (TLS)" } else { "" },
                        capabilities.join(" ")
                    ),
                );
                st.caps = capabilities;
            }
            Event::StartTlsRequested => {
                rep.note(at, "STARTTLS accepted: starting the TLS handshake")
            }
            Event::Authenticated { mechanism } => {
                let name = mechanism.map_or("LOGIN", |m| m.name());
                rep.note(at, &format!("logged in with {name}"));
                rep.event(
                    "authenticated",
                    at,
                    json!({ "mechanism": name, "server_verified": serde_json::Value::Null }),
                );
            }
            Event::MailboxSelected(m) => {
                let opt = |v: Option<u32>| v.map_or("?".to_string(), |n| n.to_string());
                let text = format!(
                    "mailbox {}: {} messages, {} recent, UIDVALIDITY {}, UIDNEXT {}{}",
                    m.name,
                    opt(m.exists),
                    opt(m.recent),
                    opt(m.uidvalidity),
                    opt(m.uidnext),
                    if m.read_only { " (read-only)" } else { "" }
                );
                rep.note(at, &text);
                st.mailbox = Some(text);
            }
            Event::MessageFetched { seq, uid, data } => {
                rep.note(
                    at,
                    &format!(
                        "fetched message {seq}{}: {} bytes",
                        uid.map(|u| format!(" (UID {u})")).unwrap_or_default(),
                        data.len()
                    ),
                );
                st.fetched.push((seq, uid, data));
            }
            Event::SearchResult(n) => rep.note(
                at,
                &format!(
                    "SEARCH: {} messages{}",
                    n.len(),
                    if n.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({})",
                            n.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
                        )
                    }
                ),
            ),
            Event::Appended(r) => rep.note(
                at,
                &format!(
                    "appended{}",
                    r.code.map(|c| format!(" [{c}]")).unwrap_or_default()
                ),
            ),
            Event::IdleUpdate(t) => rep.note(at, &format!("IDLE: {t}")),
            Event::FindingRaised(f) => rep.finding(at, &f),
            Event::Note(t) => rep.note(at, &t),
            Event::Finished(o) => {
                let (outcome, step, reason, code) = match &o {
                    Outcome::Completed => ("completed", None, String::new(), 0),
                    Outcome::StoppedAfter(s) => (
                        "stopped",
                        Some(s.name().to_string()),
                        format!("stopped after {} as asked", s.name()),
                        0,
                    ),
                    Outcome::Failed { step, reason } => (
                        "failed",
                        Some(step.name().to_string()),
                        reason.clone(),
                        step.exit_code(),
                    ),
                };
                if code != 0 {
                    rep.error(at, &reason);
                }
                st.exit = ExitCode(code);
                st.outcome = Some((outcome.into(), step, reason));
            }
            Event::CommandSent { .. }
            | Event::ResponseReceived { .. }
            | Event::IdReceived(_)
            | Event::NamespaceReceived(_)
            | Event::MailboxListed(_)
            | Event::StatusReceived(_) => {}
        },
    }
}

fn save_fetched(
    rep: &mut Reporter,
    out: &std::path::Path,
    fetched: &[(u32, Option<u32>, Vec<u8>)],
) {
    let at = now();
    if out.is_dir() {
        for (seq, uid, data) in fetched {
            let name = match uid {
                Some(u) => format!("uid-{u}.eml"),
                None => format!("seq-{seq}.eml"),
            };
            let path = out.join(name);
            match std::fs::write(&path, data) {
                Ok(()) => rep.note(
                    at,
                    &format!("saved {} bytes to {}", data.len(), path.display()),
                ),
                Err(e) => rep.error(at, &format!("cannot write {}: {e}", path.display())),
            }
        }
        return;
    }
    match fetched {
        [] => rep.note(at, "nothing fetched: --output not written"),
        [(_, _, data)] => match std::fs::write(out, data) {
            Ok(()) => rep.note(
                at,
                &format!("saved {} bytes to {}", data.len(), out.display()),
            ),
            Err(e) => rep.error(at, &format!("cannot write {}: {e}", out.display())),
        },
        _ => rep.error(
            at,
            &format!(
                "{} messages fetched: --output must be a directory to save more than one",
                fetched.len()
            ),
        ),
    }
}

fn summary(rep: &mut Reporter, st: &State, c: &Client) {
    let mut lines = vec!["=== summary".to_string()];
    lines.push(format!(
        "TLS: {}",
        st.tls.clone().unwrap_or_else(|| "none".into())
    ));
    if !st.caps.is_empty() {
        lines.push(format!("capabilities: {}", st.caps.join(" ")));
    }
    if let Some(m) = &st.mailbox {
        lines.push(m.clone());
    }
    let n = c.findings().len();
    lines.push(format!("findings: {n}"));
    rep.line(&lines.join("\n"));
    let _ = finding_json;
}
