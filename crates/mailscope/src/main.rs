//! The `mailscope` binary: CLI, config, output and exit codes. Protocol logic lives in
//! mailscope-proto, I/O in mailscope-net.

mod base64_cmd;
mod checks;
mod cli;
mod completions;
mod config;
mod credentials;
mod demo;
mod imap_cmd;
mod message;
mod output;
mod pop3_cmd;
mod probe_cmd;
mod sasl_cmd;
mod sink;
mod smtp;
mod tls_out;

use std::process;

use clap::Parser as _;

/// A process exit code. The numbers for `smtp` are swaks' (design.md, "Output").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitCode(pub u8);

impl ExitCode {
    /// Usage errors (clap's 2 is remapped: 2 means "connect failed", as in swaks).
    pub const USAGE: ExitCode = ExitCode(1);
    /// The connection could not be made.
    pub const CONNECT: ExitCode = ExitCode(2);
    /// The run completed but found something at or above `--fail-on`.
    pub const FINDINGS: ExitCode = ExitCode(10);
}

/// A usage error: printed with `error:` and exit code 1.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `n` random bytes as lower-case hex (session ids, SCRAM nonces).
pub fn random_hex(n: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; n];
    // The system RNG does not fail on Linux once booted; fall back to the clock so a broken
    // RNG degrades a nonce instead of crashing the tool.
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let args = match config::effective_args(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            process::exit(1);
        }
    };
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let _ = e.print();
            process::exit(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            cli::Command::Smtp(args) => smtp::run(&cli.global, args).await,
            cli::Command::Pop3(args) => pop3_cmd::run(&cli.global, args).await,
            cli::Command::Demo(args) => demo::run(&cli.global, args).await,
            cli::Command::Sink(args) => sink::run(&cli.global, args).await,
            cli::Command::Imap(args) => imap_cmd::run(&cli.global, args).await,
            cli::Command::Check(args) => checks::check::run(&cli.global, args).await,
            cli::Command::Spf(args) => checks::spf::run(&cli.global, args).await,
            cli::Command::Dkim(args) => checks::dkim::run(&cli.global, args).await,
            cli::Command::Dmarc(args) => checks::dmarc::run(&cli.global, args).await,
            cli::Command::Dnsbl(args) => checks::dnsbl::run(&cli.global, args).await,
            cli::Command::Probe(args) => probe_cmd::run(&cli.global, args).await,
            cli::Command::RelayTest(args) => checks::relay::run(&cli.global, args).await,
            cli::Command::Sasl(args) => sasl_cmd::run(&cli.global, args),
            cli::Command::Base64(args) => base64_cmd::run(&cli.global, args),
            cli::Command::Completions(args) => completions::run_completions(&cli.global, args),
            cli::Command::Man(args) => completions::run_man(&cli.global, args),
        }
    });
    match result {
        Ok(code) => process::exit(i32::from(code.0)),
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("error: {u}");
                process::exit(1);
            }
            eprintln!("error: {e:#}");
            process::exit(1);
        }
    }
}
