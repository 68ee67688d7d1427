//! Command-line definitions (clap). Option names follow swaks where swaks has the option.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// See what really happens between mail clients and mail servers, byte by byte, and why mail
/// is refused.
#[derive(Debug, Parser)]
#[command(name = "mailscope", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Newline-delimited JSON events on stdout (schema mailscope/1, docs/events.md); human
    /// text goes to stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Exit 10 when the run completed but found something at or above this severity.
    #[arg(long, global = true, value_name = "SEVERITY")]
    pub fail_on: Option<FailOn>,
    /// Ignore the config file and MAILSCOPE_* variables (passwords in MAILSCOPE_PASSWORD
    /// still count: they are a password source, not a default).
    #[arg(long, global = true)]
    pub no_config: bool,
    /// Show secrets (AUTH payloads, passwords) instead of redacting them.
    #[arg(long, global = true)]
    pub show_secrets: bool,
    /// Show every CR and LF as an escape (\r \n); by default only deviations are escaped.
    #[arg(long, global = true)]
    pub escape: bool,
    /// Show a timestamp before each transcript line.
    #[arg(long, global = true)]
    pub show_time: bool,
}

/// Severity threshold for `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Info,
    Warning,
    Error,
    Critical,
}

impl FailOn {
    /// The severity this threshold stands for.
    pub fn severity(self) -> mailscope_proto::Severity {
        use mailscope_proto::Severity as S;
        match self {
            FailOn::Info => S::Info,
            FailOn::Warning => S::Warning,
            FailOn::Error => S::Error,
            FailOn::Critical => S::Critical,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an SMTP session (swaks' options): connect, STARTTLS, AUTH, send, and show every
    /// byte with findings.
    #[command(after_help = SMTP_EXAMPLES)]
    Smtp(Box<SmtpArgs>),
    /// Start the loopback test peers (scripts/peers) and run the seed-000 reproduction:
    /// a message with bare LFs, sent raw and then normalised, to a strict Postfix.
    Demo(DemoArgs),
}

const SMTP_EXAMPLES: &str = "\
Examples:
  mailscope smtp --server mx.example.net --to bob@example.net --quit-after rcpt
  mailscope smtp --server smtp.example.net:587 --tls --auth --auth-user alice --to bob@example.net
  mailscope smtp --server smtp.example.net:465 --tls-on-connect --auth PLAIN --auth-user alice --quit-after auth
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
    /// Authenticate; without a mechanism, the best the server offers.
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
    /// Authorization identity (authzid) for PLAIN and SCRAM.
    #[arg(long, value_name = "ID")]
    pub auth_authzid: Option<String>,
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
    #[arg(long, requires = "data")]
    pub raw: bool,
    /// Seconds to wait for the connection and for each reply.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub timeout: f64,
}

fn parse_stage(s: &str) -> Result<mailscope_proto::smtp::client::Stage, String> {
    mailscope_proto::smtp::client::Stage::from_name(s).ok_or_else(|| {
        format!("unknown stage {s:?}; one of: connect, banner, first-ehlo, tls, ehlo, auth, mail, rcpt, data, dot")
    })
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Do not start the peers (they already run).
    #[arg(long)]
    pub no_start: bool,
}
