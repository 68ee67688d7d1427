//! `mailscope sink`: the fake mail server for testing senders. It accepts (or refuses, on
//! purpose) what a client sends, stores it crash-safely, and shows exactly what the client
//! said, with findings about what it did wrong. Protocol logic is the server machine in
//! mailscope-proto; connections are mailscope-net's server driver; this module wires options,
//! storage and output.

pub mod scenario;
pub mod store;
pub mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use mailscope_net::server::{ConnInfo, ConnectionLimits, ListenerSpec, SessionHandler, serve};
use mailscope_net::smtp::now;
use mailscope_proto::finding::Finding;
use mailscope_proto::smtp::receiver::Strict;
use mailscope_proto::smtp::server::{
    AuthCheck, CloseReason, Event, ReceivedMessage, Server, ServerOptions, Transfer,
};
use mailscope_proto::transcript::{RenderOptions, Role, direction_mark, render_chunk};
use mailscope_proto::{Direction, Severity, Timestamp};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::ExitCode;
use crate::cli::GlobalArgs;
use crate::output::{finding_json, rfc3339};
use crate::random_hex;

pub const SINK_EXAMPLES: &str = "\
Examples:
  mailscope sink                                   # smtp://127.0.0.1:2525, STARTTLS with a generated CA
  mailscope sink --listen submission://127.0.0.1:2587 --listen submissions://127.0.0.1:2465
  mailscope sink --transcript --strict postfix     # refuse bare LFs as Postfix does, show every byte
  mailscope sink --auth-users users.passwd --auth-required
  mailscope sink --tls-client-ca clients-ca.pem    # ask for client certificates; verified ones may AUTH EXTERNAL
  mailscope sink --exit-after 1 --fail-on error    # CI: one message, exit 10 on any error finding
  mailscope sink --no-store --json | jq 'select(.type==\"message_received\")'
  mailscope sink --greylist --greylist-delay 60    # first attempt gets 450 4.7.1, a retry after 60 s passes
  mailscope sink --delay-at rcpt:2000 -q dot       # 2 s before each RCPT reply; hang up after the final dot
  mailscope sink --scenario examples/scenarios/random-421.toml --seed 7
  mailscope sink --check-scenario examples/scenarios/greylisting.toml";

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Where to listen: [smtp|submission|submissions|lmtp]://ADDR:PORT; repeatable.
    /// Default smtp://127.0.0.1:2525. smtp and submission offer STARTTLS, submissions is
    /// implicit TLS.
    #[arg(long, value_name = "[SCHEME://]ADDR:PORT")]
    pub listen: Vec<String>,
    /// Name in the greeting and EHLO reply.
    #[arg(long, default_value = "mailscope-sink.localhost", value_name = "NAME")]
    pub hostname: String,
    /// Greeting text after the name.
    #[arg(long, value_name = "TEXT")]
    pub banner: Option<String>,
    /// Certificate chain (PEM) for STARTTLS and implicit TLS; without it one is generated at
    /// start and its CA written to STORE/tls/ca.pem.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Users and cleartext passwords, Dovecot passwd-file syntax (user:{PLAIN}password).
    /// Without it, PLAIN, LOGIN and CRAM-MD5 accept anything, XOAUTH2 and OAUTHBEARER any
    /// token, and SCRAM (-PLUS too) any user with the password "mailscope". With it,
    /// XOAUTH2 and OAUTHBEARER expect the user's password as the bearer token, and EXTERNAL
    /// needs the client certificate's name to be a user.
    #[arg(long, value_name = "FILE")]
    pub auth_users: Option<PathBuf>,
    /// Ask TLS clients for a certificate and verify it against the CA certificate(s) in this
    /// PEM file; a verified client is offered AUTH EXTERNAL (as its certificate's CN, or
    /// first SAN). Clients without a certificate are still served.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse MAIL before AUTH (530 5.7.0).
    #[arg(long)]
    pub auth_required: bool,
    /// Offer AUTH before TLS (passwords in the clear).
    #[arg(long)]
    pub insecure_auth_plaintext: bool,
    /// Do not offer an extension: pipelining, size, 8bitmime, smtputf8, enhancedstatuscodes,
    /// chunking, binarymime (off by default; `--ext binarymime` turns it on), dsn, starttls,
    /// auth. Repeatable.
    #[arg(long = "no-ext", value_name = "NAME")]
    pub no_ext: Vec<String>,
    /// Offer an extension that is off by default (binarymime). Repeatable.
    #[arg(long = "ext", value_name = "NAME")]
    pub ext: Vec<String>,
    /// Refuse bare LF in DATA as a strict server does: qmail (451 and close at the first
    /// bare LF), postfix (550 5.5.2 after the final dot), drop (close mid-DATA silently).
    #[arg(long, value_name = "MODE", value_parser = parse_strict)]
    pub strict: Option<Strict>,
    /// Store directory (default $XDG_DATA_HOME/mailscope/sink): Maildir/, meta/, sessions/.
    #[arg(long, value_name = "DIR", conflicts_with = "no_store")]
    pub store: Option<PathBuf>,
    /// Do not store messages, only count them (benchmark mode).
    #[arg(long)]
    pub no_store: bool,
    /// Keep only the newest N messages.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<usize>,
    /// Print every session's full conversation.
    #[arg(long)]
    pub transcript: bool,
    /// Write each accepted message to stdout.
    #[arg(long, conflicts_with = "json")]
    pub print: bool,
    /// Exit after N messages were accepted (exit 10 with --fail-on if a finding reached it).
    #[arg(long, value_name = "N")]
    pub exit_after: Option<u64>,
    /// Largest message in octets (advertised with SIZE; more gets 552 5.3.4).
    #[arg(long, default_value_t = 50 * 1024 * 1024, value_name = "OCTETS")]
    pub max_message_size: u64,
    /// Recipients per message (more get 452 4.5.3).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_recipients: usize,
    /// Connections at once; when full, the longest-idle connection is closed with 421.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_connections: usize,
    /// Connections at once from one address (more get 421 4.7.0).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub max_per_ip: usize,
    /// Seconds without input before 421 4.4.2.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub idle_timeout: u64,
    /// Seconds a session may last.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub session_timeout: u64,
    /// Rules from a scenario file (TOML; docs/scenarios.md). The flags below come first,
    /// then the file's rules; the first rule that matches a reply decides it.
    #[arg(long, value_name = "FILE", help_heading = "Faults on purpose")]
    pub scenario: Option<PathBuf>,
    /// Check a scenario file, print its rules in words and exit: 0 valid, 1 invalid.
    #[arg(long, value_name = "FILE", help_heading = "Faults on purpose")]
    pub check_scenario: Option<PathBuf>,
    /// Seed for random choices (probability, delay odds), overriding the file's `seed`;
    /// without either, one is drawn and printed so the run can be repeated.
    #[arg(long, value_name = "N", help_heading = "Faults on purpose")]
    pub seed: Option<u64>,
    /// Refuse at these stages with a hard error, 500 5.3.0 (smtp-sink -f): connect, ehlo,
    /// starttls, auth, mail, rcpt, data, dot, bdat, rset, noop, vrfy, quit, other, any.
    #[arg(
        long,
        short = 'f',
        value_name = "STAGE,...",
        help_heading = "Faults on purpose"
    )]
    pub reject_at: Vec<String>,
    /// Refuse at these stages with a soft error, 450 4.3.0 (smtp-sink -r).
    #[arg(
        long,
        short = 'r',
        value_name = "STAGE,...",
        help_heading = "Faults on purpose"
    )]
    pub defer_at: Vec<String>,
    /// Close the connection without a reply at these stages (smtp-sink -q).
    #[arg(
        long,
        short = 'q',
        value_name = "STAGE,...",
        help_heading = "Faults on purpose"
    )]
    pub hangup_at: Vec<String>,
    /// Reply 421 4.0.0 and close at these stages (smtp-sink -Q).
    #[arg(
        long,
        short = 'Q',
        value_name = "STAGE,...",
        help_heading = "Faults on purpose"
    )]
    pub hangup_after_reply: Vec<String>,
    /// Wait before replying at these stages; DELAY in milliseconds (or 2s, 500ms); with ODDS
    /// (1-99), a random multiple of DELAY as smtp-sink's -W draws it.
    #[arg(
        long,
        value_name = "STAGE:DELAY[:ODDS]",
        help_heading = "Faults on purpose"
    )]
    pub delay_at: Vec<String>,
    /// smtp-sink's -W: --delay-at with the delay in seconds.
    #[arg(
        short = 'W',
        value_name = "STAGE:SECONDS[:ODDS]",
        help_heading = "Faults on purpose"
    )]
    pub delay_seconds_at: Vec<String>,
    /// smtp-sink's -w: seconds to wait before the reply to DATA.
    #[arg(
        short = 'w',
        value_name = "SECONDS",
        help_heading = "Faults on purpose"
    )]
    pub data_delay: Option<String>,
    /// Greylist: the first RCPT of each client address + sender + recipient gets
    /// 450 4.7.1; a retry (from any connection) passes.
    #[arg(long, help_heading = "Faults on purpose")]
    pub greylist: bool,
    /// With --greylist, how long a client must wait before its retry passes (seconds, or
    /// 500ms, 5m).
    #[arg(
        long,
        value_name = "SECONDS",
        requires = "greylist",
        help_heading = "Faults on purpose"
    )]
    pub greylist_delay: Option<String>,
    /// The hard reply for --reject-at, "CODE [X.Y.Z] TEXT" (smtp-sink -B).
    #[arg(
        long,
        short = 'B',
        value_name = "REPLY",
        help_heading = "Faults on purpose"
    )]
    pub hard_reply: Option<String>,
    /// The soft reply for --defer-at, "CODE [X.Y.Z] TEXT" (smtp-sink -b).
    #[arg(
        long,
        short = 'b',
        value_name = "REPLY",
        help_heading = "Faults on purpose"
    )]
    pub soft_reply: Option<String>,
}

fn parse_strict(s: &str) -> Result<Strict, String> {
    Strict::from_name(s).ok_or_else(|| format!("unknown strict mode {s:?}: qmail, postfix or drop"))
}

/// Runs the sink until Ctrl-C, or `--exit-after` messages.
pub async fn run(global: &GlobalArgs, args: &SinkArgs) -> Result<ExitCode> {
    if let Some(path) = &args.check_scenario {
        return Ok(check_scenario(global, args, path));
    }
    let specs: Vec<ListenerSpec> = if args.listen.is_empty() {
        vec![ListenerSpec::parse("smtp://127.0.0.1:2525")?]
    } else {
        args.listen
            .iter()
            .map(|l| ListenerSpec::parse(l).map_err(|e| crate::UsageError(e.to_string())))
            .collect::<Result<_, _>>()?
    };
    let sink = Sink::new(global, args, &specs)?;
    let sink = Arc::new(sink);
    let (tls, tls_note, leaf) = tls_config(args, sink.store_root.as_deref(), &specs)?;
    if let Some(leaf) = leaf {
        let _ = sink.tls_leaf.set(leaf);
    }
    let limits = ConnectionLimits {
        max_connections: args.max_connections.max(1),
        max_per_ip: args.max_per_ip.max(1),
        ..ConnectionLimits::default()
    };
    let done = sink.done.clone();
    let announce = sink.clone();
    let result = serve(
        &specs,
        tls,
        limits,
        sink.clone(),
        move |bound| announce.started(bound, &tls_note),
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                () = done.notified() => {},
            }
        },
    )
    .await;
    if let Err(e) = result {
        bail!(crate::UsageError(e.to_string()));
    }
    // Let sessions that are finishing record their last lines.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let worst = *sink.worst.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    sink.out.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.event(
        "sink_stopped",
        now(),
        json!({ "messages": sink.messages.load(Ordering::Relaxed), "sessions": sink.sessions.load(Ordering::Relaxed) }),
    );
    let failed = global
        .fail_on
        .is_some_and(|t| worst.is_some_and(|w| w >= t.severity()));
    Ok(if failed {
        ExitCode::FINDINGS
    } else {
        ExitCode(0)
    })
}

/// `--check-scenario FILE`: the rules in words (with the flags' rules first, if any), or
/// what is wrong; exit 0 or 1.
fn check_scenario(global: &GlobalArgs, args: &SinkArgs, path: &std::path::Path) -> ExitCode {
    use std::io::Write as _;
    let mut out: Box<dyn std::io::Write> = if global.json {
        Box::new(anstream::stderr())
    } else {
        Box::new(anstream::stdout())
    };
    let flags = match flag_faults(args).rules() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(anstream::stderr(), "error: {e}");
            return ExitCode::USAGE;
        }
    };
    match scenario::Scenario::load(path) {
        Ok(sc) => {
            let _ = writeln!(
                out,
                "{}: valid, {} rule{}",
                path.display(),
                sc.rules.len(),
                if sc.rules.len() == 1 { "" } else { "s" }
            );
            if let Some(d) = &sc.description {
                let _ = writeln!(out, "  {}", d.trim());
            }
            if let Some(seed) = args.seed.or(sc.seed) {
                let _ = writeln!(out, "  seed {seed}");
            }
            if !flags.is_empty() {
                let _ = writeln!(out, "from the command line, tried first:");
                for r in &flags {
                    let _ = writeln!(out, "  {r}");
                }
            }
            if !flags.is_empty() && !sc.rules.is_empty() {
                let _ = writeln!(out, "from the file:");
            }
            for r in &sc.rules {
                let _ = writeln!(out, "  {r}");
            }
            ExitCode(0)
        }
        Err(e) => {
            let _ = writeln!(anstream::stderr(), "error: {e}");
            ExitCode(1)
        }
    }
}

fn flag_faults(args: &SinkArgs) -> scenario::FlagFaults {
    scenario::FlagFaults {
        hangup_at: args.hangup_at.clone(),
        hangup_after_reply: args.hangup_after_reply.clone(),
        reject_at: args.reject_at.clone(),
        defer_at: args.defer_at.clone(),
        hard_reply: args.hard_reply.clone(),
        soft_reply: args.soft_reply.clone(),
        greylist: args.greylist,
        greylist_delay_ms: 0,
        delay_at: args.delay_at.clone(),
        sink_delay: args.delay_seconds_at.clone(),
        data_delay: args.data_delay.clone(),
    }
}

/// The fault engine from the flags and `--scenario`, or `None` when there are no rules,
/// with what to announce.
fn fault_engine(args: &SinkArgs) -> Result<(Option<Arc<scenario::Engine>>, Vec<String>)> {
    let mut flags = flag_faults(args);
    if let Some(d) = &args.greylist_delay {
        flags.greylist_delay_ms = scenario::parse_duration_ms(d, 1_000)
            .map_err(|e| crate::UsageError(format!("--greylist-delay: {e}")))?;
    }
    let mut rules = flags.rules().map_err(crate::UsageError)?;
    let mut notes = Vec::new();
    let mut file_seed = None;
    let mut random = rules
        .iter()
        .any(|r| r.probability.is_some() || r.delay_odds.is_some());
    if let Some(path) = &args.scenario {
        let sc = scenario::Scenario::load(path).map_err(|e| crate::UsageError(e.to_string()))?;
        notes.push(format!(
            "scenario {}: {} rule{}{}",
            path.display(),
            sc.rules.len(),
            if sc.rules.len() == 1 { "" } else { "s" },
            sc.description
                .as_deref()
                .map(|d| format!(" ({})", d.trim()))
                .unwrap_or_default()
        ));
        file_seed = sc.seed;
        random |= sc.uses_randomness();
        rules.extend(sc.rules);
    }
    if rules.is_empty() {
        return Ok((None, notes));
    }
    let seed = match args.seed.or(file_seed) {
        Some(s) => s,
        None => u64::from_str_radix(&random_hex(8), 16).unwrap_or(0),
    };
    for r in &rules {
        notes.push(format!("fault {r}"));
    }
    if random {
        notes.push(format!(
            "random choices use seed {seed} (--seed {seed} repeats them)"
        ));
    }
    Ok((Some(Arc::new(scenario::Engine::new(rules, seed))), notes))
}

/// The server configuration from a PEM chain and key, asking for client certificates when
/// `--tls-client-ca` is given.
fn server_config(
    args: &SinkArgs,
    chain: &[u8],
    key: &[u8],
) -> Result<Arc<mailscope_net::ServerConfig>> {
    let config = match &args.tls_client_ca {
        Some(ca) => {
            let ca_pem = std::fs::read(ca)
                .with_context(|| format!("reading --tls-client-ca {}", ca.display()))?;
            mailscope_net::server::server_config_with_client_ca(chain, key, &ca_pem)
                .map_err(|e| crate::UsageError(format!("--tls-client-ca {}: {e}", ca.display())))?
        }
        None => mailscope_net::server_config_from_pem(chain, key)
            .map_err(|e| crate::UsageError(e.to_string()))?,
    };
    Ok(config)
}

/// The server's TLS configuration, what to announce about it, and its leaf certificate
/// (DER, for the tls-server-end-point channel binding).
type TlsSetup = (
    Option<Arc<mailscope_net::ServerConfig>>,
    String,
    Option<Vec<u8>>,
);

/// TLS for the listeners: the user's certificate, or a CA and leaf made now.
fn tls_config(
    args: &SinkArgs,
    store: Option<&std::path::Path>,
    specs: &[ListenerSpec],
) -> Result<TlsSetup> {
    let client_ca_note = args
        .tls_client_ca
        .as_ref()
        .map(|ca| {
            format!(
                "; client certificates are asked for and verified against {} (AUTH EXTERNAL)",
                ca.display()
            )
        })
        .unwrap_or_default();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let c = std::fs::read(cert)
            .with_context(|| format!("reading --tls-cert {}", cert.display()))?;
        let k =
            std::fs::read(key).with_context(|| format!("reading --tls-key {}", key.display()))?;
        let config = server_config(args, &c, &k)?;
        return Ok((
            Some(config),
            format!("TLS certificate from {}{client_ca_note}", cert.display()),
            mailscope_net::server::leaf_der_from_pem(&c),
        ));
    }
    let mut names = vec!["localhost".to_string(), args.hostname.clone()];
    for s in specs {
        let ip = s.addr.ip();
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    for extra in ["127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let generated =
        mailscope_net::certgen::generate_server_tls(&names).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = server_config(
        args,
        generated.chain_pem.as_bytes(),
        generated.key_pem.as_bytes(),
    )?;
    let dir = match store {
        Some(s) => s.join("tls"),
        None => std::env::temp_dir().join(format!("mailscope-sink-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &generated.ca_pem)
        .with_context(|| format!("writing {}", ca_path.display()))?;
    Ok((
        Some(config),
        format!(
            "TLS certificate generated for {} (SHA-256 {}); its CA is {} (use --tls-ca-path with it){client_ca_note}",
            names.join(", "),
            generated.leaf_sha256,
            ca_path.display()
        ),
        mailscope_net::server::leaf_der_from_pem(generated.chain_pem.as_bytes()),
    ))
}

struct Sink {
    template: ServerOptions,
    faults: Option<Arc<scenario::Engine>>,
    fault_notes: Vec<String>,
    store: Option<store::Store>,
    store_root: Option<PathBuf>,
    out: Mutex<Out>,
    cursors: Mutex<HashMap<u64, usize>>,
    /// Per connection: client and server stream offsets where the next message's meta
    /// transcript starts (just after the previous message), so a meta file holds its own
    /// transaction, not the whole session again.
    meta_from: Mutex<HashMap<u64, (u64, u64)>>,
    messages: AtomicU64,
    sessions: AtomicU64,
    exit_after: Option<u64>,
    done: Arc<Notify>,
    worst: Mutex<Option<Severity>>,
    transcript: bool,
    print: bool,
    users_note: Option<String>,
    /// The leaf certificate the listeners present (DER), once TLS is set up.
    tls_leaf: std::sync::OnceLock<Vec<u8>>,
}

impl Sink {
    fn new(global: &GlobalArgs, args: &SinkArgs, specs: &[ListenerSpec]) -> Result<Sink> {
        let mut o = ServerOptions::new(args.hostname.clone());
        o.banner = args.banner.clone();
        o.auth_required = args.auth_required;
        o.insecure_auth_plaintext = args.insecure_auth_plaintext;
        o.strict = args.strict.unwrap_or(Strict::Off);
        o.limits.max_message_size = args.max_message_size;
        o.limits.max_recipients = args.max_recipients.max(1);
        o.limits.idle_timeout_us = args.idle_timeout.max(1).saturating_mul(1_000_000);
        o.limits.session_timeout_us = Some(args.session_timeout.max(1).saturating_mul(1_000_000));
        for name in &args.no_ext {
            if !o.extensions.set(name, false) {
                bail!(crate::UsageError(format!(
                    "--no-ext {name}: unknown extension"
                )));
            }
        }
        for name in &args.ext {
            if !o.extensions.set(name, true) {
                bail!(crate::UsageError(format!(
                    "--ext {name}: unknown extension"
                )));
            }
        }
        let mut users_note = None;
        if let Some(path) = &args.auth_users {
            let users = users::Users::load(path)?;
            users_note = Some(format!(
                "AUTH checks {} user(s) from {} (XOAUTH2/OAUTHBEARER: the password is the expected bearer token)",
                users.len(),
                path.display()
            ));
            o.auth = AuthCheck::Lookup(Arc::new(users));
        }
        let (store, store_root) = if args.no_store {
            (None, None)
        } else {
            let root = match &args.store {
                Some(p) => p.clone(),
                None => default_store()?,
            };
            (
                Some(store::Store::open(&root, args.max_messages)?),
                Some(root),
            )
        };
        o.confirm_storage = store.is_some();
        let _ = specs;
        let (faults, fault_notes) = fault_engine(args)?;
        Ok(Sink {
            template: o,
            faults,
            fault_notes,
            store,
            store_root,
            out: Mutex::new(Out {
                json: global.json,
                show_secrets: global.show_secrets,
                escape: global.escape,
                session: random_hex(8),
            }),
            cursors: Mutex::new(HashMap::new()),
            meta_from: Mutex::new(HashMap::new()),
            messages: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            exit_after: args.exit_after,
            done: Arc::new(Notify::new()),
            worst: Mutex::new(None),
            transcript: args.transcript,
            print: args.print,
            users_note,
            tls_leaf: std::sync::OnceLock::new(),
        })
    }

    fn started(&self, bound: &[ListenerSpec], tls_note: &str) {
        let Ok(out) = self.out.lock() else { return };
        let listeners: Vec<String> = bound.iter().map(|b| b.to_string()).collect();
        out.note(&format!("sink listening on {}", listeners.join(", ")));
        out.note(tls_note);
        match &self.store_root {
            Some(r) => out.note(&format!("storing messages in {}", r.display())),
            None => out.note("--no-store: messages are counted, not kept"),
        }
        if let Some(n) = &self.users_note {
            out.note(n);
        } else if matches!(self.template.auth, AuthCheck::AcceptAny { .. }) {
            out.note("AUTH accepts any PLAIN/LOGIN/CRAM-MD5 credentials, any XOAUTH2/OAUTHBEARER token, and SCRAM (-PLUS inside TLS) with password \"mailscope\" (--auth-users FILE checks)");
        }
        for n in &self.fault_notes {
            out.note(n);
            out.event("note", now(), json!({ "text": n }));
        }
        out.event(
            "sink_started",
            now(),
            json!({
                "listeners": listeners,
                "store": self.store_root.as_ref().map(|p| p.display().to_string()),
                "tls": tls_note,
            }),
        );
    }

    fn raise_worst(&self, f: &Finding) {
        if let Ok(mut w) = self.worst.lock()
            && w.is_none_or(|cur| f.severity > cur)
        {
            *w = Some(f.severity);
        }
    }

    /// Prints the transcript chunks of `server` recorded since the last call.
    fn print_transcript(&self, conn: &ConnInfo, server: &Server) {
        if !self.transcript {
            return;
        }
        let Ok(mut cursors) = self.cursors.lock() else {
            return;
        };
        let cursor = cursors.entry(conn.id).or_insert(0);
        let chunks = server.transcript().chunks();
        let Ok(out) = self.out.lock() else { return };
        let opts = RenderOptions {
            escape_all: out.escape,
            show_secrets: out.show_secrets,
        };
        for c in &chunks[(*cursor).min(chunks.len())..] {
            let mark = direction_mark(Role::Server, c.direction, c.tls);
            for l in render_chunk(c, opts) {
                out.human(&format!("[{}] {mark}{}", conn.id, l.text));
            }
            out.event(
                match c.direction {
                    Direction::ClientToServer => "received",
                    Direction::ServerToClient => "sent",
                },
                c.at,
                json!({
                    "connection": conn.id,
                    "direction": c.direction.as_str(),
                    "offset": c.offset,
                    "length": c.len(),
                    "tls": c.tls,
                    "text": render_chunk(c, RenderOptions { escape_all: true, show_secrets: out.show_secrets })
                        .into_iter().map(|l| l.text).collect::<String>(),
                    "redacted": !c.redactions.is_empty() && !out.show_secrets,
                }),
            );
        }
        *cursor = chunks.len();
    }

    /// Where this message's meta transcript starts, and remembers where the next one will.
    fn meta_start(&self, conn: &ConnInfo, server: &Server) -> (u64, u64) {
        let now_at = (
            server.transcript().len(Direction::ClientToServer),
            server.transcript().len(Direction::ServerToClient),
        );
        match self.meta_from.lock() {
            Ok(mut m) => m.insert(conn.id, now_at).unwrap_or((0, 0)),
            Err(_) => (0, 0),
        }
    }

    fn message_meta(
        &self,
        conn: &ConnInfo,
        server: &Server,
        m: &ReceivedMessage,
        name: Option<&str>,
    ) -> Value {
        json!({
            "name": name,
            "connection": conn.id,
            "index": m.index,
            "client": { "address": conn.peer.to_string(), "listener": conn.listener.to_string(), "helo": m.helo },
            "tls": m.tls,
            "auth": m.auth.as_ref().map(|a| json!({ "mechanism": a.mechanism.name(), "authcid": a.authcid, "authzid": a.authzid })),
            "envelope": {
                "from": m.envelope.from.address,
                "params": m.envelope.params.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "rcpts": m.envelope.rcpts.iter().map(|r| json!({
                    "to": r.to.address,
                    "params": r.params.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            },
            "transfer": match m.transfer { Transfer::Data => "DATA", Transfer::Bdat => "BDAT" },
            "size": m.content.len(),
            "sha256": sha256_hex(&m.content),
            "content_offset": m.content_offset,
            "findings": m.findings.iter().map(finding_json).collect::<Vec<_>>(),
            "transcript": transcript_json(server, Some((m.content_offset, m.content.len())), self.meta_start(conn, server)),
        })
    }

    fn message_line(&self, conn: &ConnInfo, m: &ReceivedMessage, stored: Option<&store::Stored>) {
        let Ok(out) = self.out.lock() else { return };
        let rcpts: Vec<&str> = m
            .envelope
            .rcpts
            .iter()
            .map(|r| r.to.address.as_str())
            .collect();
        let mut ids: Vec<String> = Vec::new();
        for f in &m.findings {
            let n = m.findings.iter().filter(|g| g.kind.id == f.kind.id).count();
            let label = if n > 1 {
                format!("{} x{n}", f.kind.id)
            } else {
                f.kind.id.to_string()
            };
            if !ids.contains(&label) {
                ids.push(label);
            }
        }
        out.human(&format!(
            "*** [{}] message {} <{}> -> {}, {} bytes{}{}{}",
            conn.id,
            m.index,
            m.envelope.from.address,
            rcpts
                .iter()
                .map(|r| format!("<{r}>"))
                .collect::<Vec<_>>()
                .join(" "),
            m.content.len(),
            if m.tls { ", TLS" } else { "" },
            stored
                .map(|s| format!(", stored as {}", s.name))
                .unwrap_or_default(),
            if ids.is_empty() {
                String::new()
            } else {
                format!("; findings: {}", ids.join(", "))
            },
        ));
        out.event(
            "message_received",
            now(),
            json!({
                "connection": conn.id,
                "index": m.index,
                "from": m.envelope.from.address,
                "rcpts": rcpts,
                "size": m.content.len(),
                "sha256": sha256_hex(&m.content),
                "tls": m.tls,
                "auth": m.auth.as_ref().map(|a| a.authcid.clone()),
                "stored_as": stored.map(|s| s.name.clone()),
                "path": stored.map(|s| s.path.display().to_string()),
                "meta": stored.map(|s| s.meta_path.display().to_string()),
                "findings": m.findings.iter().map(finding_json).collect::<Vec<_>>(),
            }),
        );
    }

    fn count_message(&self) {
        let n = self.messages.fetch_add(1, Ordering::Relaxed) + 1;
        if self.exit_after.is_some_and(|max| n >= max) {
            self.done.notify_one();
        }
    }
}

impl SessionHandler for Sink {
    fn new_session(&self, conn: &ConnInfo) -> Server {
        let mut o = self.template.clone();
        o.session_id = format!("S{}", conn.id);
        o.auth_nonce = random_hex(12);
        o.implicit_tls = conn.listener.kind.implicit_tls();
        o.lmtp = conn.listener.kind == mailscope_net::server::ListenerKind::Lmtp;
        self.sessions.fetch_add(1, Ordering::Relaxed);
        if let Ok(out) = self.out.lock() {
            out.human(&format!(
                "*** [{}] connection from {} on {}",
                conn.id, conn.peer, conn.listener
            ));
            out.event(
                "client_connected",
                now(),
                json!({ "connection": conn.id, "peer": conn.peer.to_string(), "listener": conn.listener.to_string() }),
            );
        }
        let mut server = Server::new(o);
        if let Some(engine) = &self.faults {
            server.set_reply_policy(Box::new(engine.session(conn.peer.ip())));
        }
        server
    }

    fn store(
        &self,
        conn: &ConnInfo,
        server: &Server,
        message: &ReceivedMessage,
    ) -> impl std::future::Future<Output = Result<String, String>> + Send {
        // Everything taken from the machine is computed here, before the first await: the
        // future owns its data and never holds the (non-Sync) machine.
        let conn = *conn;
        let message = message.clone();
        let prepared = self.store.as_ref().map(|store| {
            let name = store.new_name();
            let meta = self.message_meta(&conn, server, &message, Some(&name));
            (store.clone(), name, meta)
        });
        async move {
            let Some((store, name, meta)) = prepared else {
                return Ok(format!("S{}.{}", conn.id, message.index));
            };
            match store.store(name, message.content.clone(), &meta).await {
                Ok(stored) => {
                    self.message_line(&conn, &message, Some(&stored));
                    if self.print {
                        print_message(&message.content);
                    }
                    self.count_message();
                    Ok(stored.name)
                }
                Err(e) => Err(format!("{e:#}")),
            }
        }
    }

    fn on_event(&self, conn: &ConnInfo, server: &Server, event: &Event) {
        self.print_transcript(conn, server);
        match event {
            Event::FindingRaised(f) => {
                self.raise_worst(f);
                if let Ok(out) = self.out.lock() {
                    if self.transcript {
                        out.human(&format!("*** [{}] finding {f}", conn.id));
                    }
                    let mut j = finding_json(f);
                    j["connection"] = json!(conn.id);
                    out.event("finding", now(), j);
                }
            }
            Event::Note(n) => {
                if let Ok(out) = self.out.lock() {
                    if self.transcript {
                        out.human(&format!("*** [{}] {n}", conn.id));
                    }
                    out.event("note", now(), json!({ "connection": conn.id, "text": n }));
                }
            }
            Event::Authenticated {
                mechanism, authcid, ..
            } => {
                if let Ok(out) = self.out.lock() {
                    out.event(
                        "client_authenticated",
                        now(),
                        json!({ "connection": conn.id, "mechanism": mechanism.name(), "authcid": authcid }),
                    );
                }
            }
            Event::MessageReceived(m) if self.store.is_none() => {
                self.message_line(conn, m, None);
                if self.print {
                    print_message(&m.content);
                }
                self.count_message();
            }
            _ => {}
        }
    }

    fn on_tls(&self, conn: &ConnInfo, result: Result<String, String>) {
        let Ok(out) = self.out.lock() else { return };
        match result {
            Ok(s) => {
                if self.transcript {
                    out.human(&format!("*** [{}] TLS established: {s}", conn.id));
                }
                out.event(
                    "client_tls",
                    now(),
                    json!({ "connection": conn.id, "ok": true, "detail": s }),
                );
            }
            Err(e) => {
                out.human(&format!("*** [{}] TLS handshake failed: {e}", conn.id));
                out.event(
                    "client_tls",
                    now(),
                    json!({ "connection": conn.id, "ok": false, "detail": e }),
                );
            }
        }
    }

    fn on_closed(&self, conn: &ConnInfo, server: &Server, reason: Option<CloseReason>) {
        self.print_transcript(conn, server);
        if let Ok(mut c) = self.cursors.lock() {
            c.remove(&conn.id);
        }
        if let Ok(mut m) = self.meta_from.lock() {
            m.remove(&conn.id);
        }
        let findings = server.findings();
        let mut ids: Vec<&str> = Vec::new();
        for f in findings {
            if !ids.contains(&f.kind.id) {
                ids.push(f.kind.id);
            }
        }
        let reason_text = reason
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "closed".into());
        let summary = json!({
            "connection": conn.id,
            "peer": conn.peer.to_string(),
            "listener": conn.listener.to_string(),
            "helo": server.helo_name(),
            "tls": server.is_tls(),
            "auth": server.auth().map(|a| json!({ "mechanism": a.mechanism.name(), "authcid": a.authcid })),
            "messages": server.messages_accepted(),
            "reason": reason_text,
            "findings": findings.iter().map(finding_json).collect::<Vec<_>>(),
        });
        if let Some(store) = &self.store {
            let mut record = summary.clone();
            record["transcript"] = transcript_json(server, None, (0, 0));
            store.store_session(&format!("{}-{}", now().0, conn.id), &record);
        }
        let Ok(out) = self.out.lock() else { return };
        out.human(&format!(
            "*** [{}] session from {} ended ({reason_text}): {}{}{} message(s){}",
            conn.id,
            conn.peer,
            server
                .helo_name()
                .map(|h| format!("HELO {h}, "))
                .unwrap_or_default(),
            if server.is_tls() { "TLS, " } else { "" },
            server.messages_accepted(),
            if ids.is_empty() {
                String::new()
            } else {
                format!("; findings: {}", ids.join(", "))
            },
        ));
        out.event("client_closed", now(), summary);
    }

    fn tls_certificate(&self) -> Option<&[u8]> {
        self.tls_leaf.get().map(Vec::as_slice)
    }

    fn on_refused(&self, peer: SocketAddr, why: &str) {
        let Ok(out) = self.out.lock() else { return };
        out.human(&format!("*** {peer}: {why}"));
        out.event("note", now(), json!({ "text": format!("{peer}: {why}") }));
    }
}

/// The sink's own output: one line per session and message, transcripts on request, NDJSON.
struct Out {
    json: bool,
    show_secrets: bool,
    escape: bool,
    session: String,
}

impl Out {
    fn human(&self, line: &str) {
        crate::output::write_human(self.json, line);
    }

    fn note(&self, text: &str) {
        self.human(&format!("*** {text}"));
    }

    fn event(&self, ty: &str, at: Timestamp, body: Value) {
        use std::io::Write as _;
        if !self.json {
            return;
        }
        let mut obj = json!({ "schema": "mailscope/1", "type": ty, "ts": rfc3339(at), "session": self.session });
        if let (Value::Object(o), Value::Object(b)) = (&mut obj, body) {
            o.extend(b);
        }
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut stdout, &obj);
        let _ = stdout.write_all(b"\n");
        let _ = stdout.flush();
    }
}

/// The session transcript as JSON lines (escaped, secrets redacted). With `elide`, the
/// client bytes of a message's content are replaced by a marker: the message itself is in the
/// Maildir, and a transcript must not hold a second copy of large mail.
fn transcript_json(server: &Server, elide: Option<(u64, usize)>, from: (u64, u64)) -> Value {
    let opts = RenderOptions {
        escape_all: true,
        show_secrets: false,
    };
    let mut lines = Vec::new();
    let mut elided = false;
    let chunks = server
        .transcript()
        .chunks()
        .iter()
        .filter(|c| match c.direction {
            Direction::ClientToServer => c.offset >= from.0,
            Direction::ServerToClient => c.offset >= from.1,
        });
    for c in chunks {
        for l in render_chunk(c, opts) {
            if let (Some((start, len)), Direction::ClientToServer) = (elide, c.direction) {
                // DATA on the wire is at least as long as the unstuffed content.
                if l.offset >= start && l.offset < start + len as u64 {
                    if !elided {
                        lines.push(json!({ "dir": "client", "offset": start, "tls": c.tls,
                            "text": format!("<message content: {len} octets, stored in the Maildir>") }));
                        elided = true;
                    }
                    continue;
                }
            }
            lines.push(json!({ "dir": c.direction.as_str(), "offset": l.offset, "tls": l.tls, "text": l.text }));
        }
    }
    Value::Array(lines)
}

fn print_message(content: &[u8]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(content);
    if !content.ends_with(b"\n") {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn default_store() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("mailscope/sink"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/mailscope/sink")),
        None => bail!(crate::UsageError(
            "no HOME or XDG_DATA_HOME: give --store DIR or --no-store".into()
        )),
    }
}
