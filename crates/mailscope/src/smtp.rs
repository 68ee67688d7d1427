//! `mailscope smtp`: wires the CLI options to the SMTP client machine and the async driver,
//! and renders what happens. No SMTP logic lives here.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::Args;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mailscope_net::smtp::{DriverEvent, SessionError, SmtpTarget, now, run_smtp_client};
use mailscope_net::{TlsClient, TlsClientOptions, TlsReport, Verification, parse_server};
use mailscope_proto::Secret;
use mailscope_proto::sasl::{ChannelBindingType, Credentials, Mechanism, OAuthTarget};
use mailscope_proto::smtp::client::{
    AuthOptions, BodyType, Client, ClientOptions, DsnNotify, DsnOptions, DsnRet, Event, HelloKind,
    Outcome, RawCommand, SmugglingVariant, Stage,
};
use mailscope_proto::smtp::data::{prepare_normalized, prepare_raw};
use mailscope_proto::smtp::reply::ReplyLimits;
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::message::{Attachment, MessageSpec};
use crate::output::{Hide, Reporter, ms};
use crate::tls_out::{report_tls, report_tls_failure, tls_json};
use crate::{ExitCode, random_hex};

pub const SMTP_EXAMPLES: &str = "\
Examples:
  mailscope smtp --server mx.example.net --to bob@example.net --quit-after rcpt
  mailscope smtp --server smtp.example.net:587 --tls --auth --auth-user alice --to bob@example.net
  mailscope smtp --server smtp.example.net:465 --tls-on-connect --auth PLAIN --auth-user alice --quit-after auth
  MAILSCOPE_TOKEN=ya29.... mailscope smtp --server smtp.gmail.com:587 --tls --auth XOAUTH2 --auth-user alice@gmail.com --quit-after auth
  mailscope smtp --server mx.example.net:587 --tls --tls-cert me.pem --tls-key me.key --auth EXTERNAL --quit-after auth
  mailscope smtp --server 127.0.0.1:2525 --to a@example.test --data @capture.eml --raw
  mailscope smtp --server 127.0.0.1:2525 --to a@example.test --json | jq .type";

#[derive(Debug, Args)]
pub struct SmtpArgs {
    /// Server to connect to: host, host:port, [v6]:port.
    #[arg(short = 's', long, value_name = "HOST[:PORT]")]
    pub server: Option<String>,
    /// Port (default 25, 465 with --tls-on-connect).
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Recipient; repeat or give a comma-separated list.
    #[arg(short = 't', long, value_delimiter = ',', value_name = "ADDR")]
    pub to: Vec<String>,
    /// Envelope sender (MAIL FROM); `<>` or an empty string for the null sender.
    #[arg(short = 'f', long, value_name = "ADDR")]
    pub from: Option<String>,
    /// Name to send in EHLO/HELO (default: this host's name).
    #[arg(long, value_name = "NAME")]
    pub helo: Option<String>,
    /// Use HELO instead of EHLO.
    #[arg(long, conflicts_with = "lhlo")]
    pub force_helo: bool,
    /// Use LHLO (LMTP).
    #[arg(long)]
    pub lhlo: bool,
    /// Require STARTTLS; fail (exit 29) if the server does not offer it.
    #[arg(long, visible_alias = "starttls", conflicts_with = "tls_on_connect")]
    pub tls: bool,
    /// Implicit TLS from the first byte (SMTPS, port 465).
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
    /// Write TLS secrets in NSS key log format, for Wireshark (SSLKEYLOGFILE is honoured too).
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
    /// Authenticate; without a mechanism, the best the server offers: SCRAM-SHA-256-PLUS,
    /// SCRAM-SHA-1-PLUS (inside TLS, bound to the channel), SCRAM-SHA-256, SCRAM-SHA-1,
    /// CRAM-MD5, PLAIN, LOGIN. XOAUTH2 and OAUTHBEARER (a bearer token) and EXTERNAL (the
    /// --tls-cert client certificate) are used only when named.
    #[arg(short = 'a', long, num_args = 0..=1, default_missing_value = "", value_name = "MECH")]
    pub auth: Option<String>,
    /// AUTH user name (authcid).
    #[arg(long, visible_alias = "au", value_name = "USER")]
    pub auth_user: Option<String>,
    /// AUTH password (visible to other users in `ps`; prefer MAILSCOPE_PASSWORD or a file).
    #[arg(long, visible_alias = "ap", value_name = "PASSWORD")]
    pub auth_password: Option<String>,
    /// Read the AUTH password from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "auth_password")]
    pub auth_password_file: Option<PathBuf>,
    /// Read the XOAUTH2 / OAUTHBEARER bearer token from the first line of this file (else
    /// MAILSCOPE_TOKEN, else a prompt; never a command-line argument).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Authorization identity (authzid) for PLAIN, SCRAM and EXTERNAL (EXTERNAL also takes
    /// --auth-user as the authzid; with neither it sends "=", the certificate's identity).
    #[arg(long, value_name = "ID")]
    pub auth_authzid: Option<String>,
    /// Channel binding for SCRAM-*-PLUS: tls-exporter (RFC 9266; default on TLS 1.3) or
    /// tls-server-end-point (RFC 5929; default on TLS 1.2).
    #[arg(long, value_name = "TYPE", value_parser = parse_channel_binding)]
    pub tls_channel_binding: Option<ChannelBindingType>,
    /// Allow sending a password without TLS to a server that is not on loopback.
    #[arg(long)]
    pub insecure_auth_plaintext: bool,
    /// Stop after this stage (exit 0): connect, banner, first-ehlo, tls, ehlo, auth, mail,
    /// rcpt, data, dot.
    #[arg(long, value_name = "STAGE", value_parser = parse_stage)]
    pub quit_after: Option<mailscope_proto::smtp::client::Stage>,
    /// Message: @FILE, - for stdin, or the text itself (\n in TEXT becomes a line break).
    /// Normalised to CRLF and dot-stuffed unless --raw.
    #[arg(short = 'd', long, value_name = "@FILE|-|TEXT")]
    pub data: Option<String>,
    /// Send the --data bytes unchanged (bare LFs and lone dots included), then \r\n.\r\n,
    /// or only .\r\n if they already end in CRLF.
    #[arg(long, visible_alias = "no-data-fixup", requires = "data", conflicts_with_all = ["header", "add_header", "attach"])]
    pub raw: bool,
    /// Set a header: replaces a header of that name, or adds it ("Name: value"); repeatable.
    #[arg(long, value_name = "NAME: VALUE")]
    pub header: Vec<String>,
    /// Add a header even if one of that name exists; repeatable.
    #[arg(long, value_name = "NAME: VALUE")]
    pub add_header: Vec<String>,
    /// Body of the default message (TEXT, or @FILE); with --data it replaces %NEW_BODY%.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub body: Option<String>,
    /// Attach a file (@FILE, TYPE:@FILE) or text, as MIME; repeatable. Not with --data.
    #[arg(long, value_name = "[TYPE:]@FILE|TEXT", conflicts_with = "data")]
    pub attach: Vec<String>,
    /// Seconds to wait for the connection and for each reply.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// swaks' protocol names: SMTP (HELO), ESMTP (EHLO), ESMTPS (+ --tls), ESMTPA
    /// (+ --auth), ESMTPSA (both), LMTP (LHLO).
    #[arg(long, value_name = "PROTO", value_parser = ["SMTP", "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA", "LMTP", "smtp", "esmtp", "esmtps", "esmtpa", "esmtpsa", "lmtp"])]
    pub protocol: Option<String>,
    /// Accepted for swaks compatibility: mailscope verifies certificates by default
    /// (--insecure turns it off).
    #[arg(long)]
    pub tls_verify: bool,
    /// TLS versions to offer: TLSv1.2, TLSv1.3 (comma list). Older versions are refused with
    /// a clear message: mailscope's TLS client speaks 1.2 and 1.3.
    #[arg(long, value_name = "VERSIONS")]
    pub tls_protocol: Option<String>,
    /// Cipher suites to offer (OpenSSL or IANA names, colon or comma list).
    #[arg(long, value_name = "SUITES")]
    pub tls_cipher: Option<String>,
    /// Client certificate (PEM chain), for servers that ask and for AUTH EXTERNAL.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Write the server's certificate chain as PEM to FILE (- or no value: stdout).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub tls_get_peer_cert: Option<String>,
    /// Connect from this local address (ADDR or ADDR:PORT): "does this relay's IP pass?".
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub local_interface: Option<String>,
    /// DNS server for the MX look-up when --server is not given (ADDR[:PORT]).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub resolver: Option<String>,
    /// Route as mail for DOMAIN would go (its MX), instead of the first recipient's domain.
    #[arg(long, value_name = "DOMAIN", conflicts_with = "server")]
    pub copy_routing: Option<String>,
    /// Send MAIL, RCPT and DATA in one go when the server offers PIPELINING (RFC 2920).
    #[arg(long)]
    pub pipeline: bool,
    /// Send what the server did not advertise or the protocol forbids (each marked with a
    /// finding): unadvertised extensions, pipelining without PIPELINING, oversize lines,
    /// --raw-command out of order.
    #[arg(long)]
    pub lax: bool,
    /// Send the message with BDAT (RFC 3030 CHUNKING) instead of DATA.
    #[arg(long)]
    pub chunking: bool,
    /// BDAT chunk size in octets.
    #[arg(long, default_value_t = 65536, value_name = "OCTETS")]
    pub chunk_size: usize,
    /// BODY= on MAIL: 7bit, 8bitmime, binarymime (binarymime sends with BDAT).
    #[arg(long, value_name = "TYPE")]
    pub body_type: Option<String>,
    /// DSN NOTIFY= on every RCPT: never, or a comma list of success, failure, delay.
    #[arg(long, value_name = "LIST")]
    pub dsn_notify: Option<String>,
    /// DSN RET= on MAIL: full or hdrs.
    #[arg(long, value_name = "full|hdrs")]
    pub dsn_ret: Option<String>,
    /// DSN ENVID= on MAIL (xtext-encoded when sent).
    #[arg(long, value_name = "ID")]
    pub envid: Option<String>,
    /// DSN ORCPT= on every RCPT (the recipient's own address with `rfc822;`).
    #[arg(long)]
    pub orcpt: bool,
    /// SMTPUTF8 on MAIL (RFC 6531); needed anyway for non-ASCII addresses.
    #[arg(long)]
    pub smtputf8: bool,
    /// REQUIRETLS on MAIL (RFC 8689; only inside TLS).
    #[arg(long)]
    pub requiretls: bool,
    /// Do not send SIZE= on MAIL (sent by default when the server offers SIZE).
    #[arg(long)]
    pub no_size: bool,
    /// Extra MAIL FROM parameter, sent as given; repeatable.
    #[arg(long, value_name = "PARAM")]
    pub mail_param: Vec<String>,
    /// Extra RCPT TO parameter, sent as given; repeatable.
    #[arg(long, value_name = "PARAM")]
    pub rcpt_param: Vec<String>,
    /// Close the connection without QUIT after this stage (swaks' --drop-after).
    #[arg(long, value_name = "STAGE", value_parser = parse_stage, conflicts_with = "quit_after")]
    pub drop_after: Option<mailscope_proto::smtp::client::Stage>,
    /// Close the connection right after sending this stage's command, without reading the
    /// reply (swaks' --drop-after-send): first-ehlo, tls, ehlo, auth, mail, rcpt, data, dot.
    #[arg(long, value_name = "STAGE", value_parser = parse_stage, conflicts_with_all = ["quit_after", "drop_after"])]
    pub drop_after_send: Option<mailscope_proto::smtp::client::Stage>,
    /// XCLIENT attributes (Postfix), "NAME=value NAME=value" or repeated; sent after EHLO.
    #[arg(long, value_name = "NAME=VALUE ...")]
    pub xclient: Vec<String>,
    /// Send XCLIENT before STARTTLS (with --tls) instead of after it (swaks'
    /// --xclient-before-starttls).
    #[arg(long, requires = "xclient")]
    pub xclient_before_starttls: bool,
    /// Send a raw line at a stage (STAGE:LINE, \r\n escapes understood; needs --lax).
    #[arg(long, value_name = "STAGE:LINE", requires = "lax")]
    pub raw_command: Vec<String>,
    /// SMTP smuggling probes against the server you name (--server required): sends each
    /// end-of-data lookalike (\n.\n, \r.\r, ...) with smuggled commands after it and
    /// reports how the server treated each. Optional comma list of variants; default all.
    #[arg(long, value_name = "VARIANTS", num_args = 0..=1, default_missing_value = "all", requires = "server")]
    pub probe_smuggling: Option<String>,
    /// Send a PROXY protocol header (HAProxy v1 or v2) before the first byte.
    #[arg(long, value_name = "1|2", value_parser = ["1", "2"])]
    pub proxy: Option<String>,
    /// Source address claimed in the PROXY header (default: the real local address).
    #[arg(long, value_name = "ADDR:PORT", requires = "proxy")]
    pub proxy_source: Option<std::net::SocketAddr>,
    /// Destination address claimed in the PROXY header (default: the real server address).
    #[arg(long, value_name = "ADDR:PORT", requires = "proxy")]
    pub proxy_dest: Option<std::net::SocketAddr>,
    /// Do not show what mailscope sent.
    #[arg(long)]
    pub hide_send: bool,
    /// Do not show what the server sent.
    #[arg(long)]
    pub hide_receive: bool,
    /// Do not show mailscope's notes and the summary (findings still show).
    #[arg(long)]
    pub hide_informational: bool,
    /// Show nothing on the terminal (the exit code, and --json, still tell).
    #[arg(long)]
    pub hide_all: bool,
}

fn parse_stage(s: &str) -> Result<mailscope_proto::smtp::client::Stage, String> {
    mailscope_proto::smtp::client::Stage::from_name(s).ok_or_else(|| {
        format!("unknown stage {s:?}; one of: connect, banner, first-ehlo, tls, ehlo, auth, mail, rcpt, data, dot")
    })
}

/// No --server: where mail for the first recipient's domain (or --copy-routing) goes, by
/// MX (RFC 5321 §5.1), through the one resolver builder. Returns the address to connect to
/// (resolved through the same resolver) and the MX host's name (for SNI and certificate
/// checks).
async fn route_by_mx(args: &SmtpArgs) -> Result<(Vec<(String, String)>, String)> {
    let domain = match &args.copy_routing {
        Some(d) => d.clone(),
        None => {
            let Some(to) = args.to.first() else {
                bail!(crate::UsageError(
                    "give --server, or --to (its domain's MX is used), or --copy-routing DOMAIN"
                        .into()
                ));
            };
            match to.trim().rsplit_once('@') {
                Some((_, d)) if !d.is_empty() => d.trim_end_matches('>').to_string(),
                _ => bail!(crate::UsageError(format!(
                    "--to {to:?} has no domain to look up; give --server"
                ))),
            }
        }
    };
    let resolver = mailscope_net::build_resolver(args.resolver.as_deref(), Duration::from_secs(5))
        .map_err(|e| usage(e.to_string()))?;
    let routes = mailscope_net::mail_routes(&resolver, &domain)
        .await
        .map_err(|e| usage(e.to_string()))?;
    // Every MX host with an address, best first: if connecting to one fails, the next is
    // tried (RFC 5321 §5.1).
    let mut tried = Vec::new();
    let mut candidates: Vec<(String, String, u16, std::net::IpAddr)> = Vec::new();
    for (pref, host) in &routes.hosts {
        match resolver.lookup_ip(host.as_str()).await {
            Ok(ips) => match ips.iter().next() {
                Some(ip) => candidates.push((
                    if ip.is_ipv6() {
                        format!("[{ip}]")
                    } else {
                        ip.to_string()
                    },
                    host.clone(),
                    *pref,
                    ip,
                )),
                None => tried.push(format!("{host}: no address")),
            },
            Err(e) => tried.push(format!("{host}: {e}")),
        }
    }
    let Some((_, host, pref, ip)) = candidates.first().cloned() else {
        return Err(usage(format!(
            "no usable MX host for {domain}: {}",
            tried.join("; ")
        )));
    };
    let note = if routes.implicit {
        format!("no MX for {domain}: using the domain itself (implicit MX, RFC 5321 §5.1) -> {ip}")
    } else {
        format!(
            "MX for {domain}: {} -> using {host} ({ip}, preference {pref})",
            routes
                .hosts
                .iter()
                .map(|(p, h)| format!("{p} {h}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok((
        candidates.into_iter().map(|(a, h, _, _)| (a, h)).collect(),
        note,
    ))
}

/// Runs `mailscope smtp`; returns the exit code.
pub async fn run(global: &GlobalArgs, args: &SmtpArgs) -> Result<ExitCode> {
    let (server, mx_name, route_note, mut next_mx) = match &args.server {
        Some(s) => (s.clone(), None, None, Vec::new().into_iter()),
        None => {
            let (mut candidates, note) = route_by_mx(args).await?;
            let (addr, name) = candidates.remove(0);
            (addr, Some(name), Some(note), candidates.into_iter())
        }
    };
    let default_port = if args.tls_on_connect { 465 } else { 25 };
    let (host, parsed_port) =
        parse_server(&server, default_port).map_err(|e| usage(e.to_string()))?;
    let port = args.port.unwrap_or(parsed_port);
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 86_400.0) {
        return Err(usage(format!(
            "--timeout must be between 0 and 86400 seconds, not {}",
            args.timeout
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout);

    let proto = args
        .protocol
        .as_deref()
        .map(str::to_ascii_uppercase)
        .unwrap_or_default();
    let auth_spec = match (&args.auth, proto.as_str()) {
        (None, "ESMTPA" | "ESMTPSA") => Some(String::new()),
        (a, _) => a.clone(),
    };
    let auth = match &auth_spec {
        None => None,
        Some(mech) => {
            let mechanism = if mech.is_empty() {
                None
            } else {
                Some(Mechanism::from_name(mech).ok_or_else(|| {
                    usage(format!(
                        "unknown AUTH mechanism {mech:?}; mailscope speaks {}",
                        Mechanism::ALL
                            .iter()
                            .map(|m| m.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?)
            };
            let credentials = match mechanism {
                Some(Mechanism::External) => {
                    // The identity is the client certificate's; only an authzid is sent.
                    if args.auth_password.is_some() || args.auth_password_file.is_some() {
                        return Err(usage(
                            "AUTH EXTERNAL sends no password: the TLS client certificate (--tls-cert, --tls-key) is the credential".into(),
                        ));
                    }
                    let authzid = args
                        .auth_authzid
                        .clone()
                        .or_else(|| args.auth_user.clone())
                        .filter(|z| !z.is_empty());
                    let c = Credentials::new("", "");
                    match authzid {
                        Some(z) => c.with_authzid(z),
                        None => c,
                    }
                }
                Some(m) if m.is_oauth() => {
                    if args.auth_password.is_some() || args.auth_password_file.is_some() {
                        return Err(usage(format!(
                            "AUTH {} takes a bearer token, not a password: --auth-token-file, MAILSCOPE_TOKEN, or a prompt",
                            m.name()
                        )));
                    }
                    if args.auth_authzid.is_some() {
                        return Err(usage(format!(
                            "AUTH {} has no separate authzid: the user is --auth-user",
                            m.name()
                        )));
                    }
                    let user = match &args.auth_user {
                        Some(u) => u.clone(),
                        None => prompt_line("AUTH user: ")?,
                    };
                    Credentials::new(user, token(args)?.into_inner())
                }
                _ => {
                    if args.auth_token_file.is_some() {
                        return Err(usage(
                            "--auth-token-file is for --auth XOAUTH2 or OAUTHBEARER".into(),
                        ));
                    }
                    let user = match &args.auth_user {
                        Some(u) => u.clone(),
                        None => prompt_line("AUTH user: ")?,
                    };
                    let password = crate::credentials::password(
                        args.auth_password.as_ref(),
                        args.auth_password_file.as_ref(),
                        "AUTH",
                    )?;
                    let mut credentials = Credentials::new(user, password.into_inner());
                    if let Some(z) = &args.auth_authzid {
                        credentials = credentials.with_authzid(z.clone());
                    }
                    credentials
                }
            };
            Some(AuthOptions {
                mechanism,
                credentials,
                client_nonce: random_hex(18),
            })
        }
    };
    let helo_name = args.helo.clone().unwrap_or_else(local_hostname);
    let to: Vec<String> = args
        .to
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let from = match args.from.as_deref() {
        Some("<>") => String::new(),
        Some(f) => f.to_string(),
        None => format!(
            "{}@{}",
            std::env::var("USER").unwrap_or_else(|_| "mailscope".into()),
            helo_name
        ),
    };
    // The message: --data as given (--raw: byte for byte), or swaks' default test message.
    let spec = MessageSpec {
        from: from.clone(),
        to: to.clone(),
        helo: helo_name.clone(),
        headers: args.header.clone(),
        add_headers: args.add_header.clone(),
        body: args.body.as_deref().map(read_data).transpose()?,
        attach: args
            .attach
            .iter()
            .map(|a| Attachment::parse(a))
            .collect::<Result<_>>()?,
        nonce: random_hex(8),
        unix_time: i64::try_from(now().0 / 1_000_000).unwrap_or(0),
    };
    let data = match &args.data {
        Some(d) if args.raw => Some(prepare_raw(&read_data(d)?)),
        Some(d) => Some(prepare_normalized(&spec.fix_up(&read_data(d)?)?)),
        None => Some(prepare_normalized(&spec.build_default()?)),
    };
    if to.is_empty()
        && args
            .quit_after
            .is_none_or(|s| s >= mailscope_proto::smtp::client::Stage::Rcpt)
    {
        return Err(usage(
            "--to is required unless --quit-after stops before RCPT".to_string(),
        ));
    }

    // OAUTHBEARER's host=: the name connected to (the MX host when routed by MX).
    let oauth_host = mx_name.clone().unwrap_or_else(|| host.clone());
    let tls_opts = TlsClientOptions {
        insecure: args.insecure,
        extra_ca_files: args.tls_ca_path.clone(),
        // Routed by MX: the certificate must name the MX host, not the address.
        sni: args.tls_sni.clone().or(mx_name),
        alpn: Vec::new(),
        keylog: args.keylog.clone(),
        keylog_from_env: true,
        versions: args.tls_protocol.iter().cloned().collect(),
        cipher_suites: args.tls_cipher.iter().cloned().collect(),
        client_cert: args.tls_cert.clone().zip(args.tls_key.clone()),
    };
    let tls = TlsClient::new(&tls_opts).map_err(|e| usage(e.to_string()))?;

    let mut rep = Reporter::for_client(global);
    rep.set_hide(Hide {
        send: args.hide_send,
        receive: args.hide_receive,
        informational: args.hide_informational,
        all: args.hide_all,
    });
    rep.session_started(
        "smtp",
        &host,
        port,
        args.tls_on_connect,
        args.tls,
        args.quit_after.map(|s| s.name()),
        tls.keylog_path(),
    );
    if args.tls_verify {
        rep.note(
            now(),
            "--tls-verify: certificates are verified by default in mailscope (--insecure turns it off)",
        );
    }
    if auth_spec
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("EXTERNAL"))
        && args.tls_cert.is_none()
    {
        rep.note(
            now(),
            "AUTH EXTERNAL without --tls-cert/--tls-key: the server must know you some other way (usually it takes the name from a client certificate)",
        );
    }
    if let Some(n) = &route_note {
        rep.note(now(), n);
    }

    let local = match &args.local_interface {
        None => None,
        Some(l) => Some(match l.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => std::net::SocketAddr::new(
                l.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| {
                        usage(format!(
                            "--local-interface {l:?}: expected an IP address, or ADDR:PORT"
                        ))
                    })?,
                0,
            ),
        }),
    };
    let target = SmtpTarget {
        host: host.clone(),
        port,
        implicit_tls: args.tls_on_connect,
        timeout,
        local,
        proxy: args.proxy.as_deref().map(|v| {
            (
                if v == "1" { 1 } else { 2 },
                args.proxy_source,
                args.proxy_dest,
            )
        }),
    };
    let opts = ClientOptions {
        helo_name,
        hello: if args.lhlo || proto == "LMTP" {
            HelloKind::Lhlo
        } else if args.force_helo || proto == "SMTP" {
            HelloKind::Helo
        } else {
            HelloKind::Ehlo
        },
        implicit_tls: args.tls_on_connect,
        starttls: args.tls
            || (matches!(proto.as_str(), "ESMTPS" | "ESMTPSA") && !args.tls_on_connect),
        auth,
        allow_plaintext_auth: args.insecure_auth_plaintext,
        from,
        to,
        data,
        quit_after: args.quit_after,
        reply_limits: ReplyLimits::default(),
        step_timeout_us: u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX),
        pipeline: args.pipeline,
        lax: args.lax,
        chunking: args.chunking,
        chunk_size: args.chunk_size,
        body_type: match &args.body_type {
            Some(b) => Some(BodyType::from_name(b).ok_or_else(|| {
                usage(format!(
                    "--body-type {b:?}: one of 7bit, 8bitmime, binarymime"
                ))
            })?),
            None => None,
        },
        dsn: DsnOptions {
            notify: match &args.dsn_notify {
                Some(list) => list
                    .split(',')
                    .map(|n| {
                        DsnNotify::from_name(n.trim()).ok_or_else(|| {
                            usage(format!(
                                "--dsn-notify {n:?}: never, success, failure or delay"
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
                None => Vec::new(),
            },
            ret: match &args.dsn_ret {
                Some(r) => Some(
                    DsnRet::from_name(r)
                        .ok_or_else(|| usage(format!("--dsn-ret {r:?}: full or hdrs")))?,
                ),
                None => None,
            },
            envid: args.envid.clone(),
            orcpt: args.orcpt,
        },
        smtputf8: args.smtputf8,
        requiretls: args.requiretls,
        declare_size: !args.no_size,
        mail_params: args.mail_param.clone(),
        rcpt_params: args.rcpt_param.clone(),
        drop_after: args.drop_after,
        drop_after_send: args.drop_after_send,
        xclient_before_tls: args.xclient_before_starttls,
        xclient: args
            .xclient
            .iter()
            .flat_map(|x| x.split_whitespace())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_ascii_uppercase(), v.to_string())),
                _ => Err(usage(format!("--xclient {kv:?}: expected NAME=value"))),
            })
            .collect::<Result<_>>()?,
        raw_commands: args
            .raw_command
            .iter()
            .map(|r| {
                let (stage, line) = r
                    .split_once(':')
                    .ok_or_else(|| usage(format!("--raw-command {r:?}: expected STAGE:LINE")))?;
                let stage = Stage::from_name(stage).ok_or_else(|| {
                    usage(format!("--raw-command {r:?}: unknown stage {stage:?}"))
                })?;
                let mut bytes = mailscope_proto::escape::unescape(line, false)
                    .map_err(|e| usage(format!("--raw-command {r:?}: {e}")))?;
                if !bytes.ends_with(b"\n") {
                    bytes.extend_from_slice(b"\r\n");
                }
                Ok(RawCommand { stage, bytes })
            })
            .collect::<Result<_>>()?,
        channel_binding: args.tls_channel_binding,
        oauth_target: OAuthTarget {
            host: Some(oauth_host.clone()),
            port: Some(port),
        },
        client_certificate: args.tls_cert.is_some(),
        probe_smuggling: match args.probe_smuggling.as_deref() {
            None => Vec::new(),
            Some("all") => SmugglingVariant::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(|v| {
                    SmugglingVariant::from_name(v.trim()).ok_or_else(|| {
                        usage(format!(
                            "--probe-smuggling {v:?}: one of {}",
                            SmugglingVariant::ALL
                                .iter()
                                .map(|x| x.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        },
    };
    if let Err(e) = opts.validate() {
        return Err(usage(e));
    }
    let mut client = Client::new(opts.clone());
    let mut tls = tls;
    let mut target = target;
    let mut state = SummaryState {
        peer_cert_out: args.tls_get_peer_cert.clone(),
        quit_after_given: args.quit_after.is_some(),
        drop_after_send: args.drop_after_send.is_some(),
        ..SummaryState::default()
    };
    let result = loop {
        let r = run_smtp_client(&target, &tls, &mut client, |c, ev| {
            on_event(&mut rep, &mut state, c, ev);
        })
        .await;
        // Routed by MX and the connection failed: the next MX host (RFC 5321 §5.1).
        if let Err(SessionError::Connect(e)) = &r
            && let Some((addr, name)) = next_mx.next()
        {
            rep.note(
                now(),
                &format!("{e}; trying the next MX host, {name} ({addr})"),
            );
            target.host = addr.trim_matches(['[', ']']).to_string();
            let opts_next = TlsClientOptions {
                sni: args.tls_sni.clone().or(Some(name)),
                ..tls_opts.clone()
            };
            tls = TlsClient::new(&opts_next).map_err(|e| usage(e.to_string()))?;
            client = Client::new(opts.clone());
            continue;
        }
        break r;
    };
    let code = match result {
        Err(SessionError::Connect(e)) => {
            rep.error(now(), &e.to_string());
            state.outcome = Some(("error".into(), Some("connect".into()), e.to_string()));
            ExitCode::CONNECT
        }
        Err(SessionError::ImplicitTls(e)) => {
            report_tls_failure(&mut rep, &e);
            state.outcome = Some(("failed".into(), Some("tls".into()), e.to_string()));
            ExitCode(29)
        }
        Ok(()) => state.exit,
    };
    rep.transcript(client.transcript());
    state.exit = code;
    summary(&mut rep, &state, &client, &host, port);
    let mut code = code;
    if code.0 == 0
        && global
            .fail_on
            .is_some_and(|t| rep.max_severity().is_some_and(|max| max >= t.severity()))
    {
        code = ExitCode::FINDINGS;
    }
    let (outcome, step, reason) =
        state
            .outcome
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
struct SummaryState {
    exit: ExitCode,
    /// --tls-get-peer-cert destination (`-`: the terminal).
    peer_cert_out: Option<String>,
    quit_after_given: bool,
    /// The stop was --drop-after-send (the reply to that command was not read).
    drop_after_send: bool,
    peer: Option<String>,
    connect_us: Option<u64>,
    tls: Option<TlsReport>,
    auth: Option<String>,
    latencies: Vec<(String, u64)>,
    recipients: Vec<(String, bool, String)>,
    /// (outcome, failed step, reason)
    outcome: Option<(String, Option<String>, String)>,
}

fn on_event(rep: &mut Reporter, st: &mut SummaryState, c: &Client, ev: DriverEvent) {
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
        DriverEvent::TlsEstablished(report) => {
            report_tls(rep, &report);
            if let Some(dest) = &st.peer_cert_out {
                write_peer_cert(rep, dest, &report.chain);
            }
            st.tls = Some(*report);
        }
        DriverEvent::TlsFailed(e) => report_tls_failure(rep, &e),
        DriverEvent::Machine(_, ev) => {
            match ev {
                Event::ReplyReceived {
                    command,
                    reply,
                    offset,
                    latency_us,
                } => {
                    let verb = command.unwrap_or("banner");
                    st.latencies.push((verb.to_string(), latency_us));
                    rep.event(
                    "reply",
                    at,
                    json!({ "command": command, "code": reply.code, "enhanced_code": reply.enhanced.map(|e| e.to_string()),
                            "text": reply.lines.iter().map(|l| String::from_utf8_lossy(&l.text).into_owned()).collect::<Vec<_>>(),
                            "offset": offset, "latency_us": latency_us }),
                );
                }
                Event::CommandSent { .. } => {}
                Event::CapabilitiesReceived { capabilities, tls } => {
                    rep.event("capabilities", at, json!({ "tls": tls, "greeting": capabilities.greeting, "extensions": capabilities.keywords() }));
                }
                Event::StartTlsRequested => {
                    rep.note(at, "STARTTLS accepted: starting the TLS handshake")
                }
                Event::AuthMechanismChosen {
                    mechanism,
                    offered,
                    explicit,
                } => {
                    let how = if explicit {
                        "as asked"
                    } else {
                        "the best offered"
                    };
                    rep.note(
                        at,
                        &format!(
                            "AUTH {} ({how}; offered: {})",
                            mechanism.name(),
                            offered.join(" ")
                        ),
                    );
                    rep.event("auth_mechanism_chosen", at, json!({ "mechanism": mechanism.name(), "offered": offered, "explicit": explicit }));
                }
                Event::Authenticated {
                    mechanism,
                    server_verified,
                } => {
                    let extra = match server_verified {
                        Some(true) => ", server signature verified",
                        Some(false) => ", server signature NOT verified",
                        None => "",
                    };
                    rep.note(
                        at,
                        &format!("authenticated with {}{extra}", mechanism.name()),
                    );
                    st.auth = Some(format!("{}{extra}", mechanism.name()));
                    rep.event("authenticated", at, json!({ "mechanism": mechanism.name(), "server_verified": server_verified }));
                }
                Event::RecipientAnswered {
                    to,
                    accepted,
                    reply,
                } => {
                    if !accepted {
                        rep.note(at, &format!("recipient {to} refused: {}", reply.summary()));
                    }
                    rep.event(
                        "recipient",
                        at,
                        json!({ "to": to, "accepted": accepted, "code": reply.code,
                    "enhanced_code": reply.enhanced.map(|e| e.to_string()), "text": reply.text() }),
                    );
                    st.recipients.push((to, accepted, reply.summary()));
                }
                Event::DataSent {
                    offset,
                    content_len,
                    raw,
                    terminator,
                } => {
                    rep.event("data_sent", at, json!({ "offset": offset, "length": content_len, "raw": raw, "terminator": terminator }));
                }
                Event::ReplyExplained {
                    command,
                    explanation: e,
                } => {
                    rep.note(at, &format!("why: {}", e.summary));
                    for n in &e.next {
                        rep.note(at, &format!("  check next: {n}"));
                    }
                    rep.event(
                    "reply_explained",
                    at,
                    json!({
                        "command": command,
                        "class": format!("{:?}", e.class).to_ascii_lowercase(),
                        "enhanced_code": e.enhanced.as_ref().map(|(c, _)| c.to_string()),
                        "enhanced_meaning": e.enhanced.as_ref().map(|(_, i)| i.title),
                        "category": e.category.map(|c| format!("{c:?}")),
                        "categories": e.categories.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>(),
                        "summary": e.summary,
                        "next": e.next,
                        "ip": e.ip.map(|ip| ip.to_string()),
                        "blocklist": e.blocklist.as_ref().map(|b| json!({ "name": b.name, "url": b.url })),
                        "links": e.links,
                    }),
                );
                }
                Event::RecipientDelivered {
                    to,
                    accepted,
                    reply,
                } => {
                    if !accepted {
                        rep.note(
                            at,
                            &format!("LMTP: not delivered to {to}: {}", reply.summary()),
                        );
                    }
                    rep.event(
                        "recipient_delivered",
                        at,
                        json!({ "to": to, "accepted": accepted, "code": reply.code,
                            "enhanced_code": reply.enhanced.map(|e| e.to_string()), "text": reply.text() }),
                    );
                }
                Event::ChunkSent { offset, len, last } => {
                    rep.event(
                        "chunk_sent",
                        at,
                        json!({ "offset": offset, "length": len, "last": last }),
                    );
                }
                Event::SmugglingProbeResult {
                    variant,
                    verdict,
                    replies,
                } => {
                    // The machine's own note already explains the verdict in words.
                    rep.event(
                        "smuggling_probe",
                        at,
                        json!({ "variant": variant.name(), "verdict": verdict.name(),
                            "replies": replies.iter().map(|r| r.summary()).collect::<Vec<_>>() }),
                    );
                }
                Event::FindingRaised(f) => rep.finding(at, &f),
                Event::Note(n) => rep.note(at, &n),
                Event::Finished(outcome) => {
                    let (code, o) = match &outcome {
                        Outcome::Completed => {
                            (ExitCode(0), ("completed".to_string(), None, String::new()))
                        }
                        Outcome::StoppedAfter(s) => (
                            ExitCode(0),
                            (
                                "stopped".to_string(),
                                Some(s.name().to_string()),
                                if s.name() == "rcpt" && !st.quit_after_given {
                                    "no message (--data) given: the session ends after RCPT"
                                        .to_string()
                                } else {
                                    format!("stopped after {} as asked", s.name())
                                },
                            ),
                        ),
                        Outcome::Dropped(s) => (
                            ExitCode(0),
                            (
                                "stopped".to_string(),
                                Some(s.name().to_string()),
                                if st.drop_after_send {
                                    format!(
                                        "dropped the connection right after sending {} as asked (reply not read, no QUIT)",
                                        s.name()
                                    )
                                } else {
                                    format!(
                                        "dropped the connection after {} as asked (no QUIT)",
                                        s.name()
                                    )
                                },
                            ),
                        ),
                        Outcome::Failed { step, reason, .. } => (
                            ExitCode(step.exit_code()),
                            (
                                "failed".to_string(),
                                Some(step.name().to_string()),
                                reason.clone(),
                            ),
                        ),
                    };
                    st.exit = code;
                    st.outcome = Some(o);
                }
            }
        }
    }
}

/// `--tls-get-peer-cert`: the chain as PEM, to a file or the terminal (stderr with --json).
fn write_peer_cert(rep: &mut Reporter, dest: &str, chain: &[mailscope_net::CertInfo]) {
    use base64::Engine as _;
    let mut pem = String::new();
    for c in chain {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&c.der);
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    if dest == "-" {
        rep.line(pem.trim_end());
    } else {
        match std::fs::write(dest, &pem) {
            Ok(()) => rep.note(
                now(),
                &format!(
                    "wrote the peer's certificate chain ({} certificates) to {dest}",
                    chain.len()
                ),
            ),
            Err(e) => rep.error(
                now(),
                &format!("cannot write --tls-get-peer-cert {dest}: {e}"),
            ),
        }
    }
}

fn summary(rep: &mut Reporter, st: &SummaryState, c: &Client, host: &str, port: u16) {
    let mut lines = vec!["=== summary".to_string()];
    lines.push(format!(
        "  server      {host} port {port}{}",
        st.peer
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default()
    ));
    if let Some(t) = &st.tls {
        let v = match &t.verification {
            Verification::Verified => "certificate verified".to_string(),
            Verification::Failed { reason, .. } => format!("certificate NOT verified: {reason}"),
            Verification::NotPerformed { reason } => format!("certificate not checked: {reason}"),
        };
        lines.push(format!(
            "  tls         {} {}, {v}",
            t.version, t.cipher_suite
        ));
    } else {
        lines.push("  tls         none (plaintext session)".to_string());
    }
    if let Some(caps) = c.capabilities() {
        lines.push(format!("  extensions  {}", caps.keywords().join(", ")));
    }
    if let Some(a) = &st.auth {
        lines.push(format!("  auth        {a}"));
    }
    for (to, ok, text) in &st.recipients {
        lines.push(format!(
            "  rcpt        {to}: {} ({text})",
            if *ok { "accepted" } else { "refused" }
        ));
    }
    let mut lat: Vec<String> = Vec::new();
    if let Some(us) = st.connect_us {
        lat.push(format!("connect {}", ms(us)));
    }
    lat.extend(
        st.latencies
            .iter()
            .map(|(v, us)| format!("{v} {}", ms(*us))),
    );
    lines.push(format!("  latency     {}", lat.join(", ")));
    let mut counts = [0usize; 4];
    for f in rep.findings() {
        counts[f.severity as usize] += 1;
    }
    let mut ids: Vec<&str> = Vec::new();
    for f in rep.findings() {
        if !ids.contains(&f.kind.id) {
            ids.push(f.kind.id);
        }
    }
    lines.push(format!(
        "  findings    {} critical, {} error, {} warning, {} info{}",
        counts[3],
        counts[2],
        counts[1],
        counts[0],
        if ids.is_empty() {
            String::new()
        } else {
            format!(" ({})", ids.join(", "))
        }
    ));
    let result = match &st.outcome {
        Some((o, step, reason)) if o == "failed" || o == "error" => {
            format!(
                "FAILED at {}: {reason} (exit {})",
                step.as_deref().unwrap_or("?"),
                st.exit.0
            )
        }
        Some((o, _, reason)) if o == "stopped" => format!("ok, {reason}"),
        _ => "ok".to_string(),
    };
    lines.push(format!("  result      {result}"));
    rep.line(&lines.join("\n"));
    rep.event(
        "summary",
        now(),
        json!({
            "server": host, "port": port, "peer": st.peer,
            "tls": st.tls.as_ref().map(tls_json),
            "extensions": c.capabilities().map(|c| c.keywords()),
            "auth": st.auth,
            "recipients": st.recipients.iter().map(|(to, ok, text)| json!({"to": to, "accepted": ok, "reply": text})).collect::<Vec<_>>(),
            "latency_us": st.latencies.iter().map(|(v, us)| json!({"command": v, "us": us})).collect::<Vec<_>>(),
            "connect_us": st.connect_us,
            "findings": { "critical": counts[3], "error": counts[2], "warning": counts[1], "info": counts[0] },
        }),
    );
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(crate::UsageError(msg))
}

/// `@FILE`, `-` (stdin) or the text itself (with `\n` escapes turned into line breaks).
fn read_data(spec: &str) -> Result<Vec<u8>> {
    if spec == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("reading the message from stdin")?;
        return Ok(v);
    }
    if let Some(path) = spec.strip_prefix('@') {
        return std::fs::read(path)
            .map_err(|e| usage(format!("cannot read --data file {path}: {e}")));
    }
    Ok(spec.replace("\\n", "\n").into_bytes())
}

/// The XOAUTH2 / OAUTHBEARER bearer token: --auth-token-file, MAILSCOPE_TOKEN, or a prompt
/// on a terminal. Never a command-line argument: `ps` shows those to everyone.
fn token(args: &SmtpArgs) -> Result<Secret<String>> {
    if let Some(path) = &args.auth_token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "cannot read --auth-token-file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(Secret::new(
            text.lines().next().unwrap_or_default().trim().to_string(),
        ));
    }
    if let Ok(t) = std::env::var("MAILSCOPE_TOKEN") {
        return Ok(Secret::new(t.trim().to_string()));
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("AUTH bearer token: ")
            .map(|t| Secret::new(t.trim().to_string()))
            .context("reading the token");
    }
    bail!(crate::UsageError(
        "AUTH XOAUTH2/OAUTHBEARER needs a bearer token: --auth-token-file, MAILSCOPE_TOKEN, or a terminal to prompt on".into()
    ))
}

fn parse_channel_binding(s: &str) -> Result<ChannelBindingType, String> {
    ChannelBindingType::from_name(s)
        .ok_or_else(|| format!("{s:?}: tls-exporter or tls-server-end-point"))
}

fn prompt_line(prompt: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(crate::UsageError("AUTH needs --auth-user".into()));
    }
    eprint!("{prompt}");
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(s.trim().to_string())
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
