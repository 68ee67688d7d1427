//! Command-line definitions (clap). Option names follow swaks where swaks has the option.

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
    /// Show the time since the session started before each transcript line (swaks'
    /// --show-time-lapse).
    #[arg(long, global = true, visible_alias = "show-time-lapse")]
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
    #[command(after_help = crate::smtp::SMTP_EXAMPLES)]
    Smtp(Box<crate::smtp::SmtpArgs>),
    /// Run a POP3 session: greeting, CAPA, STLS, login (USER/PASS, APOP or AUTH), mailbox
    /// summary, list, fetch byte for byte, delete; every byte shown with findings.
    #[command(after_help = crate::pop3_cmd::POP3_EXAMPLES)]
    Pop3(Box<crate::pop3_cmd::Pop3Args>),
    /// A fake mail server for testing senders: accepts (or refuses, on purpose), stores
    /// crash-safely, and shows what the client did wrong.
    #[command(after_help = crate::sink::SINK_EXAMPLES)]
    Sink(Box<crate::sink::SinkArgs>),
    /// Run an IMAP session: capabilities before and after TLS, LOGIN or AUTHENTICATE, and
    /// mailbox actions (LIST, STATUS, FETCH, APPEND, IDLE), every byte shown with findings.
    #[command(after_help = crate::imap_cmd::IMAP_EXAMPLES)]
    Imap(Box<crate::imap_cmd::ImapArgs>),
    /// The main job in one command: a sink on loopback, a STARTTLS + AUTH transaction
    /// against it, and seed 000's bare-LF message sent raw, with what the sink found.
    #[command(after_help = crate::demo::DEMO_EXAMPLES)]
    Demo(crate::demo::DemoArgs),
    /// Everything about a domain's mail set-up in one report: MX with FCrDNS, SPF, DMARC,
    /// DKIM selectors, MTA-STS, TLS-RPT, BIMI, DANE, and the MX addresses on DNS blocklists.
    #[command(after_help = crate::checks::check::CHECK_EXAMPLES)]
    Check(Box<crate::checks::check::CheckArgs>),
    /// SPF: the record as a tree of includes and redirects with DNS look-up counts, lints,
    /// and with --ip the result and the term that decided it.
    #[command(after_help = crate::checks::spf::SPF_EXAMPLES)]
    Spf(Box<crate::checks::spf::SpfArgs>),
    /// DKIM: look up and lint a selector's key, discover selectors, verify a message's
    /// signatures and explain failures.
    #[command(after_help = crate::checks::dkim::DKIM_EXAMPLES)]
    Dkim(Box<crate::checks::dkim::DkimArgs>),
    /// DMARC: the policy record parsed and linted, report destinations verified, and with a
    /// message the DMARC result with SPF and DKIM alignment.
    #[command(after_help = crate::checks::dmarc::DMARC_EXAMPLES)]
    Dmarc(Box<crate::checks::dmarc::DmarcArgs>),
    /// DNS blocklists: is this IP or domain listed? Lists queried in parallel; a list's
    /// refusal or error answer is reported as such, not as a listing.
    #[command(after_help = crate::checks::dnsbl::DNSBL_EXAMPLES)]
    Dnsbl(Box<crate::checks::dnsbl::DnsblArgs>),
    /// Probe a host's mail ports at once: open, closed or filtered, banner, protocol,
    /// capabilities and AUTH before and after TLS, TLS version, cipher and certificate.
    #[command(after_help = crate::probe_cmd::PROBE_EXAMPLES)]
    Probe(Box<crate::probe_cmd::ProbeArgs>),
    /// Open-relay test: tries the standard relay patterns (as nmap's smtp-open-relay) up to
    /// RCPT, never DATA, against the one host you name.
    #[command(after_help = crate::checks::relay::RELAY_EXAMPLES)]
    RelayTest(Box<crate::checks::relay::RelayTestArgs>),
    /// SASL by hand: the AUTH lines to type for PLAIN, LOGIN, CRAM-MD5, SCRAM, XOAUTH2 and
    /// OAUTHBEARER, or an explanation of a captured exchange.
    #[command(after_help = crate::sasl_cmd::SASL_EXAMPLES)]
    Sasl(crate::sasl_cmd::SaslArgs),
    /// Binary-safe base64: encode and decode files byte for byte.
    #[command(after_help = crate::base64_cmd::BASE64_EXAMPLES)]
    Base64(crate::base64_cmd::Base64Args),
    /// Shell completions for bash, zsh, fish, elvish or PowerShell, on stdout.
    #[command(after_help = crate::completions::COMPLETIONS_EXAMPLES)]
    Completions(crate::completions::CompletionsArgs),
    /// Man pages, generated from the same definitions as --help.
    #[command(after_help = crate::completions::MAN_EXAMPLES)]
    Man(crate::completions::ManArgs),
}
