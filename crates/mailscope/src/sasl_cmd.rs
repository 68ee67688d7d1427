//! `mailscope sasl ...`: SASL by hand. The mechanism subcommands print exactly what one types
//! into `openssl s_client` or telnet (seed 001): the `AUTH` / `AUTHENTICATE` lines and the
//! base64 answers to each challenge, built by the same client session that `mailscope smtp`
//! uses. They print credentials on purpose (design.md), so the password or token comes from a
//! file, an environment variable or a prompt, never from a command-line argument (`ps` shows
//! those to everyone).
//!
//! `mailscope sasl decode` goes the other way: it reads a captured exchange and explains each
//! message with `sasl::explain`, hiding secrets unless `--show-secrets`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use mailscope_proto::Secret;
use mailscope_proto::escape::escape;
use mailscope_proto::sasl::oauth::{self, OAuthMechanism, OAuthTarget};
use mailscope_proto::sasl::{ClientSession, Credentials, Mechanism, SaslError};
use mailscope_proto::transcript::Direction;

use crate::base64_cmd::{Alphabet, decode as b64_decode, encode};
use crate::cli::GlobalArgs;
use crate::completions::{quiet_on_closed_pipe, reject_json};
use crate::{ExitCode, UsageError, random_hex};

/// The exchange itself failed (a SCRAM server that cannot prove it knows the password, a
/// refusal): swaks' number for the AUTH stage, as in `mailscope smtp`.
const AUTH_FAILED: ExitCode = ExitCode(28);

pub const SASL_EXAMPLES: &str = "\
Examples:
  MAILSCOPE_PASSWORD=password mailscope sasl plain --user username
  mailscope sasl login --user username --password-file ~/.mailpass
  mailscope sasl cram-md5 --user alice --challenge PDEyMzRAZXhhbXBsZS5uZXQ+
  mailscope sasl scram --mech SCRAM-SHA-256 --user alice
  MAILSCOPE_TOKEN=ya29.... mailscope sasl xoauth2 --user alice@gmail.com
  mailscope sasl decode capture.txt

The mechanism commands print credentials on purpose (base64 is not encryption). The password
comes from --password-file, MAILSCOPE_PASSWORD or a prompt; tokens from --token-file,
MAILSCOPE_TOKEN or a prompt; never from a command-line argument.

Exit status: 0 on success; 1 on a usage error or unreadable input; 28 when the exchange
failed (the server refused, or a SCRAM server could not prove it knows the password).";

const PLAIN_EXAMPLES: &str = "\
Examples:
  MAILSCOPE_PASSWORD=password mailscope sasl plain --user username
  mailscope sasl plain --user alice --authzid shared@example.net --password-file ~/.mailpass
  mailscope sasl plain --user alice --base64     # only the base64, for scripts

Prints AUTH PLAIN <base64> for SMTP and POP3, a1 AUTHENTICATE PLAIN <base64> for IMAP, and
the base64 alone for servers that send an empty challenge first.";

const LOGIN_EXAMPLES: &str = "\
Examples:
  MAILSCOPE_PASSWORD=password mailscope sasl login --user username
  mailscope sasl login --user alice --password-file ~/.mailpass --base64

Prints AUTH LOGIN and the two base64 lines that answer 334 VXNlcm5hbWU6 (\"Username:\") and
334 UGFzc3dvcmQ6 (\"Password:\").";

const CRAM_EXAMPLES: &str = "\
Examples:
  mailscope sasl cram-md5 --user alice --challenge PDEyMzRAZXhhbXBsZS5uZXQ+
  mailscope sasl cram-md5 --user alice      # prompts for the challenge the server sends

The challenge is the base64 after \"334 \" (SMTP) or \"+ \" (IMAP, POP3).";

const SCRAM_EXAMPLES: &str = "\
Examples:
  mailscope sasl scram --user alice
  mailscope sasl scram --mech SCRAM-SHA-1 --user alice --password-file ~/.mailpass

Interactive: prints client-first, reads the server-first challenge from stdin (the base64
after \"334 \" or \"+ \"), prints client-final, then reads server-final and checks the
server's signature. Exit 28 if the server cannot prove it knows the password.";

const XOAUTH2_EXAMPLES: &str = "\
Examples:
  MAILSCOPE_TOKEN=ya29.... mailscope sasl xoauth2 --user alice@gmail.com
  mailscope sasl xoauth2 --user alice@example.net --token-file token.txt

XOAUTH2 as Google documents it (Microsoft 365 speaks it too): user=USER ^A auth=Bearer TOKEN
^A ^A. If the server answers with a challenge (a JSON error; `mailscope sasl decode` explains
it), send an empty line.";

const OAUTHBEARER_EXAMPLES: &str = "\
Examples:
  mailscope sasl oauthbearer --user a@example.net --host imap.example.net --port 993
  mailscope sasl oauthbearer --user alice@example.net --token-file token.txt

OAUTHBEARER (RFC 7628). If the server answers with a challenge (a JSON error), send AQ==
(base64 of the single byte 0x01) so it can end the exchange.";

const DECODE_EXAMPLES: &str = "\
Examples:
  mailscope sasl decode capture.txt
  echo 'AUTH PLAIN dGVzdAB0ZXN0AHRlc3RwYXNz' | mailscope sasl decode
  printf '334 VXNlcm5hbWU6\\n' | mailscope sasl decode
  mailscope sasl decode --mech CRAM-MD5 --show-secrets exchange.txt

Reads SMTP and POP3 (AUTH ..., 334 ..., + ...), IMAP (a1 AUTHENTICATE ..., + ...), C: and S:
transcript lines and bare base64 lines. Without an AUTH line or --mech the mechanism is
guessed from the content. Passwords, digests, proofs and tokens stay hidden unless
--show-secrets. Exit 1 if the input holds no SASL message.";

#[derive(Debug, Args)]
pub struct SaslArgs {
    #[command(subcommand)]
    pub command: SaslCommand,
}

#[derive(Debug, Subcommand)]
pub enum SaslCommand {
    /// PLAIN (RFC 4616): the one base64 line with user and password.
    #[command(after_help = PLAIN_EXAMPLES)]
    Plain(PlainArgs),
    /// LOGIN: the base64 username and password, one line per server prompt.
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(LoginArgs),
    /// CRAM-MD5 (RFC 2195): the answer to the server's challenge.
    #[command(after_help = CRAM_EXAMPLES)]
    CramMd5(CramArgs),
    /// SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, 7677), interactively, checking the server too.
    #[command(after_help = SCRAM_EXAMPLES)]
    Scram(ScramArgs),
    /// XOAUTH2 (Google, Microsoft): user and OAuth 2.0 access token.
    #[command(after_help = XOAUTH2_EXAMPLES)]
    Xoauth2(XOAuth2Args),
    /// OAUTHBEARER (RFC 7628): user, host, port and OAuth 2.0 access token.
    #[command(after_help = OAUTHBEARER_EXAMPLES)]
    Oauthbearer(OAuthBearerArgs),
    /// Explain a captured AUTH exchange line by line.
    #[command(after_help = DECODE_EXAMPLES)]
    Decode(DecodeArgs),
}

/// Where the password comes from when it is not in a file.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of this file (otherwise MAILSCOPE_PASSWORD,
    /// otherwise a prompt on the terminal).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print only the base64 line(s), for scripts.
    #[arg(long)]
    pub base64: bool,
}

#[derive(Debug, Args)]
pub struct PlainArgs {
    /// Authentication identity (the username).
    #[arg(short, long, value_name = "USER")]
    pub user: String,
    /// Authorization identity: whom to act as, if not the user itself.
    #[arg(long, value_name = "ID")]
    pub authzid: Option<String>,
    #[command(flatten)]
    pub password: PasswordArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The username.
    #[arg(short, long, value_name = "USER")]
    pub user: String,
    #[command(flatten)]
    pub password: PasswordArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct CramArgs {
    /// The username.
    #[arg(short, long, value_name = "USER")]
    pub user: String,
    /// The server's challenge, base64 as sent after "334 " or "+ "; read from stdin if
    /// left out.
    #[arg(long, value_name = "BASE64")]
    pub challenge: Option<String>,
    #[command(flatten)]
    pub password: PasswordArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ScramArgs {
    /// SCRAM-SHA-256 or SCRAM-SHA-1.
    #[arg(long, default_value = "SCRAM-SHA-256", value_name = "MECH", value_parser = parse_scram)]
    pub mech: Mechanism,
    /// The username.
    #[arg(short, long, value_name = "USER")]
    pub user: String,
    /// Authorization identity: whom to act as, if not the user itself.
    #[arg(long, value_name = "ID")]
    pub authzid: Option<String>,
    /// Client nonce (default: 36 random hex digits). Only for reproducing published
    /// examples: a fixed nonce makes the exchange replayable.
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,
    #[command(flatten)]
    pub password: PasswordArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct XOAuth2Args {
    /// The user (the mailbox address).
    #[arg(short, long, value_name = "USER")]
    pub user: String,
    /// Read the access token from the first line of this file (otherwise MAILSCOPE_TOKEN,
    /// otherwise a prompt on the terminal).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct OAuthBearerArgs {
    /// The user (the mailbox address), sent as the GS2 authzid.
    #[arg(short, long, value_name = "USER")]
    pub user: String,
    /// The server's host name, as the client connected to it.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The port the client connected to.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Read the access token from the first line of this file (otherwise MAILSCOPE_TOKEN,
    /// otherwise a prompt on the terminal).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The mechanism, for input without an AUTH line (an AUTH line in the input wins).
    #[arg(long, value_name = "MECH", value_parser = parse_any_mech)]
    pub mech: Option<AnyMech>,
    /// The captured exchange; - or nothing for stdin.
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,
}

/// A mechanism `sasl decode` can explain: one of the session machines' or an OAuth one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyMech {
    Sasl(Mechanism),
    OAuth(OAuthMechanism),
}

impl AnyMech {
    fn from_name(s: &str) -> Option<Self> {
        // The OAuth names first: they have their own explainer and acknowledgement rules.
        OAuthMechanism::from_name(s)
            .map(AnyMech::OAuth)
            .or_else(|| Mechanism::from_name(s).map(AnyMech::Sasl))
    }

    fn name(self) -> &'static str {
        match self {
            AnyMech::Sasl(m) => m.name(),
            AnyMech::OAuth(m) => m.name(),
        }
    }

    fn client_first(self) -> bool {
        match self {
            AnyMech::Sasl(m) => m.client_first(),
            AnyMech::OAuth(_) => true,
        }
    }

    fn explain(self, direction: Direction, bytes: &[u8], show: bool) -> String {
        match self {
            AnyMech::Sasl(m) => mailscope_proto::sasl::explain(m, direction, bytes, show),
            AnyMech::OAuth(m) => oauth::explain_oauth(m, direction, bytes, show),
        }
    }
}

fn known_names() -> String {
    Mechanism::ALL
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_any_mech(s: &str) -> Result<AnyMech, String> {
    AnyMech::from_name(s).ok_or_else(|| format!("unknown mechanism; one of: {}", known_names()))
}

fn parse_scram(s: &str) -> Result<Mechanism, String> {
    match Mechanism::from_name(s) {
        Some(m) if m.is_scram_plus() => Err(format!(
            "{} binds to a TLS connection (channel binding), which a hand-typed exchange does not have: use {} here, or `mailscope smtp --auth {}`",
            m.name(),
            m.without_plus().name(),
            m.name()
        )),
        Some(m) if m.is_scram() => Ok(m),
        _ => Err("one of: SCRAM-SHA-256, SCRAM-SHA-1".into()),
    }
}

/// Runs `mailscope sasl`.
pub fn run(global: &GlobalArgs, args: &SaslArgs) -> Result<ExitCode> {
    reject_json(global, "sasl")?;
    quiet_on_closed_pipe(match &args.command {
        SaslCommand::Plain(a) => plain(a),
        SaslCommand::Login(a) => login(a),
        SaslCommand::CramMd5(a) => cram_md5(a),
        SaslCommand::Scram(a) => scram(a),
        SaslCommand::Xoauth2(a) => xoauth2(a),
        SaslCommand::Oauthbearer(a) => oauthbearer(a),
        SaslCommand::Decode(a) => decode(a, global.show_secrets),
    })
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

fn sasl_usage(e: SaslError) -> anyhow::Error {
    usage(e.to_string())
}

/// Stdout for the mechanism commands: `***` notes and command forms, or with `--base64`
/// only the base64 lines. Every line is flushed, since the interactive ones read stdin next.
struct Out {
    base64_only: bool,
}

impl Out {
    fn write(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// A note (`*** ...`); a multi-line note gets `***` on every line.
    fn note(&self, text: &str) -> std::io::Result<()> {
        if self.base64_only {
            return Ok(());
        }
        for line in text.lines() {
            self.write(&format!("*** {line}"))?;
        }
        Ok(())
    }

    /// A line to type that is not the bare base64.
    fn command(&self, text: &str) -> std::io::Result<()> {
        if self.base64_only {
            return Ok(());
        }
        self.write(text)
    }

    fn base64(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.write(&encode(bytes, Alphabet::Standard, true))
    }

    /// The forms of an initial response: SMTP/POP3, IMAP with SASL-IR, and the bare base64.
    fn initial_response(&self, mech: &str, bytes: &[u8]) -> std::io::Result<()> {
        // RFC 4954 §4: an empty initial response is sent as "=".
        let b64 = match encode(bytes, Alphabet::Standard, true) {
            s if s.is_empty() => "=".to_owned(),
            s => s,
        };
        self.note("SMTP and POP3:")?;
        self.command(&format!("AUTH {mech} {b64}"))?;
        self.note("IMAP (the server lists SASL-IR):")?;
        self.command(&format!("a1 AUTHENTICATE {mech} {b64}"))?;
        self.note(&format!(
            "Or send \"AUTH {mech}\" (IMAP: \"a1 AUTHENTICATE {mech}\") and answer the empty challenge (\"334 \" or \"+ \") with:"
        ))?;
        self.base64(bytes)
    }
}

const CLEARTEXT_NOTE: &str =
    "Base64 is not encryption: these lines carry the password. Send them only inside TLS.";

fn plain(args: &PlainArgs) -> Result<ExitCode> {
    let out = Out {
        base64_only: args.output.base64,
    };
    let mut creds = Credentials::new(args.user.clone(), password(&args.password)?.into_inner());
    creds.authzid = args.authzid.clone();
    let mut session = ClientSession::new(Mechanism::Plain, creds, "").map_err(sasl_usage)?;
    let Some(message) = session.initial_response() else {
        bail!("PLAIN produced no initial response");
    };
    out.note(&format!("PLAIN: {}. {CLEARTEXT_NOTE}", message.redacted))?;
    out.initial_response("PLAIN", message.bytes.expose())?;
    Ok(ExitCode(0))
}

fn login(args: &LoginArgs) -> Result<ExitCode> {
    let out = Out {
        base64_only: args.output.base64,
    };
    let creds = Credentials::new(args.user.clone(), password(&args.password)?.into_inner());
    let mut session = ClientSession::new(Mechanism::Login, creds, "").map_err(sasl_usage)?;
    let username = session.step(b"Username:").map_err(sasl_usage)?;
    let password = session.step(b"Password:").map_err(sasl_usage)?;
    out.note(&format!(
        "LOGIN: {}, {}. {CLEARTEXT_NOTE}",
        username.redacted, password.redacted
    ))?;
    out.note("SMTP and POP3 (IMAP: a1 AUTHENTICATE LOGIN):")?;
    out.command("AUTH LOGIN")?;
    out.note("Answer the first prompt, 334 VXNlcm5hbWU6 (\"Username:\"), with:")?;
    out.base64(username.bytes.expose())?;
    out.note("Answer the second prompt, 334 UGFzc3dvcmQ6 (\"Password:\"), with:")?;
    out.base64(password.bytes.expose())?;
    Ok(ExitCode(0))
}

fn cram_md5(args: &CramArgs) -> Result<ExitCode> {
    let out = Out {
        base64_only: args.output.base64,
    };
    let creds = Credentials::new(args.user.clone(), password(&args.password)?.into_inner());
    let mut session = ClientSession::new(Mechanism::CramMd5, creds, "").map_err(sasl_usage)?;
    let challenge = match &args.challenge {
        Some(text) => match parse_server_line(text, AnyMech::Sasl(Mechanism::CramMd5)) {
            Ok(ServerLine::Challenge(bytes)) => bytes,
            Ok(_) => return Err(usage("--challenge is a reply, not a challenge")),
            Err(e) => return Err(usage(format!("--challenge: {e}"))),
        },
        None => {
            out.note("SMTP and POP3 (IMAP: a1 AUTHENTICATE CRAM-MD5):")?;
            out.command("AUTH CRAM-MD5")?;
            out.note("Paste the server's challenge (the line after 334 or +):")?;
            let mut input = std::io::stdin().lock();
            match read_server_line(&mut input, AnyMech::Sasl(Mechanism::CramMd5))? {
                Some(ServerLine::Challenge(bytes)) => bytes,
                Some(other) => return Ok(refused(&other)),
                None => return Err(usage("stdin ended before the CRAM-MD5 challenge")),
            }
        }
    };
    let response = session.step(&challenge).map_err(sasl_usage)?;
    out.note(&format!("CRAM-MD5 challenge {}", quoted(&challenge)))?;
    out.note(&format!("Answer it with ({}):", response.redacted))?;
    out.base64(response.bytes.expose())?;
    Ok(ExitCode(0))
}

fn scram(args: &ScramArgs) -> Result<ExitCode> {
    let out = Out {
        base64_only: args.output.base64,
    };
    let mech = args.mech;
    let any = AnyMech::Sasl(mech);
    let mut creds = Credentials::new(args.user.clone(), password(&args.password)?.into_inner());
    creds.authzid = args.authzid.clone();
    let nonce = args.nonce.clone().unwrap_or_else(|| random_hex(18));
    let mut session = ClientSession::new(mech, creds, &nonce).map_err(sasl_usage)?;
    let Some(first) = session.initial_response() else {
        bail!("{mech} produced no client-first message");
    };
    out.note(&format!(
        "{mech} client-first {}",
        quoted(first.bytes.expose())
    ))?;
    out.initial_response(mech.name(), first.bytes.expose())?;

    let mut input = std::io::stdin().lock();
    out.note("Paste the server-first challenge (the line after 334 or +):")?;
    let server_first = match read_server_line(&mut input, any)? {
        Some(ServerLine::Challenge(bytes)) => bytes,
        Some(other) => return Ok(refused(&other)),
        None => return Err(usage("stdin ended before the server-first message")),
    };
    out.note(&any.explain(Direction::ServerToClient, &server_first, false))?;
    let client_final = match session.step(&server_first) {
        Ok(m) => m,
        Err(e) => return Ok(failed(&e)),
    };
    out.note("client-final, with the proof derived from the password; send:")?;
    out.base64(client_final.bytes.expose())?;

    out.note("Paste the server-final challenge (the line after 334 or +):")?;
    let verified = match read_server_line(&mut input, any)? {
        Some(ServerLine::Challenge(bytes)) => session.step(&bytes).map(|_| ()),
        // A server that reports success without server-final never proved anything.
        Some(ServerLine::Success(_)) => session.handle_success_data(b""),
        Some(other @ ServerLine::Failure(_)) => return Ok(refused(&other)),
        None => {
            return Err(usage(
                "stdin ended before the server-final message: the server was not verified",
            ));
        }
    };
    if let Err(e) = verified {
        return Ok(failed(&e));
    }
    out.note(
        "Server signature verified: the server knows the password.\nAnswer with an empty line; the server then reports success (235, +OK or a1 OK).",
    )?;
    Ok(ExitCode(0))
}

fn xoauth2(args: &XOAuth2Args) -> Result<ExitCode> {
    let out = Out {
        base64_only: args.output.base64,
    };
    let token = token(args.token_file.as_deref())?;
    let message = oauth::xoauth2_initial_response(&args.user, &token).map_err(sasl_usage)?;
    out.note(&format!(
        "XOAUTH2: {}. Base64 is not encryption: these lines carry the token. Send them only inside TLS.",
        message.redacted
    ))?;
    out.initial_response("XOAUTH2", message.bytes.expose())?;
    out.note(
        "If the server answers with a challenge (a JSON error), send an empty line; `mailscope sasl decode` explains the error.",
    )?;
    Ok(ExitCode(0))
}

fn oauthbearer(args: &OAuthBearerArgs) -> Result<ExitCode> {
    let out = Out {
        base64_only: args.output.base64,
    };
    let token = token(args.token_file.as_deref())?;
    let target = OAuthTarget {
        host: args.host.clone(),
        port: args.port,
    };
    let message =
        oauth::oauthbearer_initial_response(&args.user, &target, &token).map_err(sasl_usage)?;
    out.note(&format!(
        "OAUTHBEARER: {}. Base64 is not encryption: these lines carry the token. Send them only inside TLS.",
        message.redacted
    ))?;
    out.initial_response("OAUTHBEARER", message.bytes.expose())?;
    out.note("If the server answers with a challenge (a JSON error), send this line so it can end the exchange (RFC 7628 §3.2.3):")?;
    out.base64(OAuthMechanism::OAuthBearer.error_acknowledgement())?;
    Ok(ExitCode(0))
}

fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", escape(bytes))
}

/// Reports a failed exchange on stderr; exit 28.
fn failed(e: &SaslError) -> ExitCode {
    eprintln!("error: {e}");
    AUTH_FAILED
}

/// Reports a server's refusal (or an unexpected success) on stderr; exit 28.
fn refused(line: &ServerLine) -> ExitCode {
    match line {
        ServerLine::Failure(text) => eprintln!("error: the server refused: {text}"),
        ServerLine::Success(text) => {
            eprintln!("error: the server reported success before the exchange was finished: {text}")
        }
        ServerLine::Challenge(_) => eprintln!("error: unexpected challenge"),
    }
    AUTH_FAILED
}

/// The password: `--password-file`, `MAILSCOPE_PASSWORD`, or a prompt on the terminal.
fn password(args: &PasswordArgs) -> Result<Secret<String>> {
    read_secret(
        args.password_file.as_deref(),
        "MAILSCOPE_PASSWORD",
        "Password: ",
        "a password: --password-file FILE, MAILSCOPE_PASSWORD, or a terminal to prompt on",
    )
}

/// The OAuth access token: `--token-file`, `MAILSCOPE_TOKEN`, or a prompt on the terminal.
fn token(file: Option<&Path>) -> Result<Secret<String>> {
    let token = read_secret(
        file,
        "MAILSCOPE_TOKEN",
        "OAuth access token: ",
        "an access token: --token-file FILE, MAILSCOPE_TOKEN, or a terminal to prompt on",
    )?;
    // Tokens are pasted from JSON responses and files: surrounding blanks are never part
    // of one (RFC 6750's b64token has no spaces).
    Ok(Secret::new(token.expose().trim().to_owned()))
}

fn read_secret(file: Option<&Path>, env: &str, prompt: &str, need: &str) -> Result<Secret<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        return Ok(Secret::new(
            text.lines().next().unwrap_or_default().to_owned(),
        ));
    }
    if let Ok(value) = std::env::var(env) {
        return Ok(Secret::new(value));
    }
    // rpassword prompts on /dev/tty, which exists when either side is a terminal.
    if std::io::stdin().is_terminal() || std::io::stderr().is_terminal() {
        return rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| usage(format!("cannot prompt for {need}: {e}")));
    }
    Err(usage(format!(
        "this needs {need} (never a command-line argument: other users see those in ps)"
    )))
}

/// One line from the server, as pasted by the user.
#[derive(Debug)]
enum ServerLine {
    /// A challenge (`334 ...`, `+ ...`, or bare base64), decoded.
    Challenge(Vec<u8>),
    /// A success reply (`235`, `+OK`, `a1 OK`).
    Success(String),
    /// A failure reply (`535`, `-ERR`, `a1 NO`).
    Failure(String),
}

fn read_server_line(input: &mut impl BufRead, mech: AnyMech) -> Result<Option<ServerLine>> {
    loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line.trim().is_empty() {
            continue;
        }
        return match parse_server_line(&line, mech) {
            Ok(l) => Ok(Some(l)),
            Err(e) => Err(usage(e)),
        };
    }
}

/// Classifies a pasted server line and decodes a challenge. Raw (not base64) SCRAM and
/// CRAM-MD5 challenges are accepted too, since people paste them from logs.
fn parse_server_line(line: &str, mech: AnyMech) -> Result<ServerLine, String> {
    let mut text = line.trim();
    for prefix in ["S:", "<-", "<~"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest.trim_start();
        }
    }
    let payload = if let Some(rest) = strip_code(text, "334") {
        rest
    } else if text == "+" || text.starts_with("+ ") {
        text[1..].trim()
    } else if let Some(outcome) = outcome(text, None) {
        return Ok(outcome);
    } else {
        text
    };
    match b64_decode(payload.as_bytes(), Alphabet::Standard) {
        Ok(bytes) => Ok(ServerLine::Challenge(bytes)),
        Err(e) => {
            let raw_ok = match mech {
                AnyMech::Sasl(m) if m.is_scram() => ["r=", "v=", "e=", "m="]
                    .iter()
                    .any(|p| payload.starts_with(p)),
                AnyMech::Sasl(Mechanism::CramMd5) => payload.starts_with('<'),
                _ => false,
            };
            if raw_ok {
                Ok(ServerLine::Challenge(payload.as_bytes().to_vec()))
            } else {
                Err(format!("{payload:?} is not base64: {e}"))
            }
        }
    }
}

/// `334 text` or `334` → `text`.
fn strip_code<'a>(text: &'a str, code: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(code)?;
    (rest.is_empty() || rest.starts_with(' ')).then(|| rest.trim())
}

/// A reply that ends an exchange: SMTP 2xx/4xx/5xx (but not 334), POP3 `+OK`/`-ERR`, or an
/// IMAP tagged `OK`/`NO`/`BAD` (with the tag if known, any tag otherwise).
fn outcome(text: &str, imap_tag: Option<&str>) -> Option<ServerLine> {
    let bytes = text.as_bytes();
    if bytes.len() >= 3
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && (bytes.len() == 3 || matches!(bytes[3], b' ' | b'-'))
        && !text.starts_with("334")
    {
        return match bytes[0] {
            b'2' => Some(ServerLine::Success(text.to_owned())),
            b'4' | b'5' => Some(ServerLine::Failure(text.to_owned())),
            _ => None,
        };
    }
    if text.starts_with("+OK") {
        return Some(ServerLine::Success(text.to_owned()));
    }
    if text.starts_with("-ERR") {
        return Some(ServerLine::Failure(text.to_owned()));
    }
    let mut words = text.split_whitespace();
    let (tag, status) = (words.next()?, words.next()?);
    if tag == "*" || tag == "+" || imap_tag.is_some_and(|t| t != tag) {
        return None;
    }
    match status.to_ascii_uppercase().as_str() {
        "OK" => Some(ServerLine::Success(text.to_owned())),
        "NO" | "BAD" => Some(ServerLine::Failure(text.to_owned())),
        _ => None,
    }
}

/// `mailscope sasl decode`.
fn decode(args: &DecodeArgs, show_secrets: bool) -> Result<ExitCode> {
    let input = crate::base64_cmd::read_input(args.input.as_ref())?;
    let mut decoder = Decoder::new(args.mech, show_secrets);
    for line in input.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        decoder.line(&String::from_utf8_lossy(line));
    }
    if decoder.messages == 0 {
        return Err(usage(
            "no SASL message found in the input (expected AUTH / AUTHENTICATE lines, 334 or + challenges, or base64)",
        ));
    }
    crate::completions::write_stdout(decoder.out.as_bytes())?;
    Ok(ExitCode(0))
}

/// What a line of a captured exchange was recognised as.
enum Parsed<'a> {
    /// `AUTH MECH [ir]` or `tag AUTHENTICATE MECH [ir]`.
    Start {
        mech: &'a str,
        ir: Option<&'a str>,
        imap_tag: Option<&'a str>,
        prefix: String,
    },
    /// A challenge: `334 ...` or `+ ...`.
    Challenge(&'a str),
    Outcome(ServerLine),
    /// `*`: the client cancels.
    Cancel,
    /// Bare base64 (or an empty line with an explicit direction).
    Payload(&'a str),
    Other,
}

/// The line-by-line explainer: remembers the mechanism, the IMAP tag and whose turn it is.
struct Decoder {
    fixed: Option<AnyMech>,
    mech: Option<AnyMech>,
    /// The mechanism was guessed as "some SCRAM": titles say SCRAM, not SCRAM-SHA-256.
    scram_guessed: bool,
    in_exchange: bool,
    next: Direction,
    imap_tag: Option<String>,
    show: bool,
    messages: usize,
    out: String,
}

impl Decoder {
    fn new(fixed: Option<AnyMech>, show: bool) -> Self {
        Self {
            fixed,
            mech: fixed,
            scram_guessed: false,
            in_exchange: false,
            next: match fixed {
                Some(m) if !m.client_first() => Direction::ServerToClient,
                _ => Direction::ClientToServer,
            },
            imap_tag: None,
            show,
            messages: 0,
            out: String::new(),
        }
    }

    fn emit(&mut self, mark: &str, text: &str) {
        self.out.push_str(mark);
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn explain_lines(&mut self, text: &str) {
        for line in text.lines() {
            self.emit("   ", line);
        }
    }

    fn line(&mut self, raw: &str) {
        let mut text = raw.trim();
        let mut explicit = None;
        for (prefix, dir) in [
            ("C:", Direction::ClientToServer),
            ("S:", Direction::ServerToClient),
            ("->", Direction::ClientToServer),
            ("~>", Direction::ClientToServer),
            ("<-", Direction::ServerToClient),
            ("<~", Direction::ServerToClient),
        ] {
            if let Some(rest) = text.strip_prefix(prefix) {
                text = rest.trim_start();
                explicit = Some(dir);
                break;
            }
        }
        match self.parse(text, explicit) {
            Parsed::Start {
                mech,
                ir,
                imap_tag,
                prefix,
            } => self.start(mech, ir, imap_tag, &prefix),
            Parsed::Challenge(payload) => {
                self.emit("S: ", text);
                self.payload(Direction::ServerToClient, payload);
            }
            Parsed::Outcome(outcome) => {
                self.emit("S: ", text);
                let what = match outcome {
                    ServerLine::Success(_) => "authentication succeeded",
                    _ => "authentication failed",
                };
                self.emit("   ", what);
                self.end();
            }
            Parsed::Cancel => {
                self.emit("C: ", text);
                self.emit(
                    "   ",
                    "the client cancels the exchange (the server answers with an error)",
                );
                self.end();
            }
            Parsed::Payload(payload) => {
                let mut direction = explicit.unwrap_or(self.next);
                if explicit.is_none() && self.mech.is_none() {
                    // Outside a known exchange the content says who sent it.
                    match b64_decode(payload.as_bytes(), Alphabet::Standard)
                        .ok()
                        .and_then(|b| guess(&b))
                    {
                        Some(Guess::Mech(_, d)) => direction = d,
                        Some(Guess::OAuthError) => direction = Direction::ServerToClient,
                        None => {}
                    }
                }
                let mark = mark(direction);
                if direction == Direction::ClientToServer && !self.show && !payload.is_empty() {
                    self.emit(mark, "<redacted>");
                } else {
                    self.emit(mark, text);
                }
                self.payload(direction, payload);
            }
            Parsed::Other => {
                if !text.is_empty() {
                    let direction = explicit.unwrap_or_else(|| guess_direction(text));
                    self.emit(mark(direction), text);
                }
            }
        }
    }

    fn parse<'a>(&self, text: &'a str, explicit: Option<Direction>) -> Parsed<'a> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let client_side = explicit != Some(Direction::ServerToClient);
        if client_side {
            if words.len() >= 2 && words[0].eq_ignore_ascii_case("AUTH") {
                return Parsed::Start {
                    mech: words[1],
                    ir: words.get(2).copied(),
                    imap_tag: None,
                    prefix: format!("{} {}", words[0], words[1]),
                };
            }
            if words.len() >= 3 && words[1].eq_ignore_ascii_case("AUTHENTICATE") {
                return Parsed::Start {
                    mech: words[2],
                    ir: words.get(3).copied(),
                    imap_tag: Some(words[0]),
                    prefix: format!("{} {} {}", words[0], words[1], words[2]),
                };
            }
            if self.in_exchange && text == "*" {
                return Parsed::Cancel;
            }
        }
        if explicit != Some(Direction::ClientToServer) {
            if let Some(payload) = strip_code(text, "334") {
                return Parsed::Challenge(payload);
            }
            if text == "+" || text.starts_with("+ ") {
                return Parsed::Challenge(text[1..].trim());
            }
            if self.in_exchange
                && let Some(outcome) = outcome(text, self.imap_tag.as_deref())
            {
                return Parsed::Outcome(outcome);
            }
        }
        if text.is_empty() {
            return match explicit {
                Some(_) if self.in_exchange => Parsed::Payload(""),
                _ => Parsed::Other,
            };
        }
        let base64_like = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if base64_like && (self.in_exchange || self.mech.is_some() || self.guessable(text)) {
            return Parsed::Payload(text);
        }
        Parsed::Other
    }

    /// Whether a bare line outside an exchange decodes to something recognisable (so
    /// that `QUIT` or `DATA`, which are valid base64, stay protocol lines).
    fn guessable(&self, text: &str) -> bool {
        b64_decode(text.as_bytes(), Alphabet::Standard)
            .ok()
            .and_then(|bytes| guess(&bytes))
            .is_some()
    }

    fn start(&mut self, mech: &str, ir: Option<&str>, imap_tag: Option<&str>, prefix: &str) {
        let shown = match ir {
            Some(ir) if !self.show && ir != "=" => format!("{prefix} <redacted>"),
            Some(ir) => format!("{prefix} {ir}"),
            None => prefix.to_owned(),
        };
        self.emit("C: ", &shown);
        self.in_exchange = true;
        self.imap_tag = imap_tag.map(str::to_owned);
        self.scram_guessed = false;
        self.mech = AnyMech::from_name(mech);
        match (self.mech, self.fixed) {
            (None, _) => self.emit(
                "   ",
                &format!(
                    "mechanism {mech} is not one mailscope explains ({}); its messages are shown decoded",
                    known_names()
                ),
            ),
            (Some(m), Some(f)) if m != f => self.emit(
                "   ",
                &format!("the exchange uses {}, not --mech {}", m.name(), f.name()),
            ),
            _ => {}
        }
        self.next = Direction::ServerToClient;
        if let Some(ir) = ir {
            // RFC 4954 §4: "=" is an empty initial response.
            let ir = if ir == "=" { "" } else { ir };
            self.payload(Direction::ClientToServer, ir);
        }
    }

    fn end(&mut self) {
        self.in_exchange = false;
        self.mech = self.fixed;
        self.scram_guessed = false;
        self.imap_tag = None;
        self.next = match self.fixed {
            Some(m) if !m.client_first() => Direction::ServerToClient,
            _ => Direction::ClientToServer,
        };
    }

    /// Decodes and explains one base64 payload sent in `direction`.
    fn payload(&mut self, direction: Direction, payload: &str) {
        self.next = match direction {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        };
        let bytes = match b64_decode(payload.as_bytes(), Alphabet::Standard) {
            Ok(b) => b,
            Err(e) => {
                self.emit("   ", &format!("not base64: {e}"));
                return;
            }
        };
        self.messages += 1;
        let mut guessed_oauth_error = false;
        if self.mech.is_none() {
            match guess(&bytes) {
                Some(Guess::Mech(m, _)) => {
                    self.scram_guessed = matches!(m, AnyMech::Sasl(s) if s.is_scram());
                    self.mech = Some(m);
                    self.in_exchange = true;
                    let name = if self.scram_guessed {
                        "SCRAM"
                    } else {
                        m.name()
                    };
                    self.emit(
                        "   ",
                        &format!("(mechanism guessed from the content: {name})"),
                    );
                }
                Some(Guess::OAuthError) => guessed_oauth_error = true,
                None => {}
            }
        }
        if guessed_oauth_error {
            let text = oauth::explain_oauth(
                OAuthMechanism::OAuthBearer,
                Direction::ServerToClient,
                &bytes,
                self.show,
            );
            let mut lines = text.lines();
            lines.next();
            self.explain_lines(
                "OAuth error challenge (JSON; XOAUTH2 or OAUTHBEARER): the token was refused; the client answers with an empty line (XOAUTH2) or AQ== (OAUTHBEARER)",
            );
            let rest: Vec<&str> = lines.collect();
            self.explain_lines(&rest.join("\n"));
            return;
        }
        match self.mech {
            Some(m) => self.explain_with(m, direction, &bytes),
            None => {
                let shown = if direction == Direction::ClientToServer && !self.show {
                    format!("{} bytes, hidden", bytes.len())
                } else {
                    quoted(&bytes)
                };
                self.emit("   ", &format!("decoded: {shown}"));
            }
        }
    }

    fn explain_with(&mut self, m: AnyMech, direction: Direction, bytes: &[u8]) {
        let mut text = m.explain(direction, bytes, self.show);
        if self.scram_guessed {
            // The hash is not in the messages; do not claim one.
            text = text.replacen(m.name(), "SCRAM", 1);
        }
        self.explain_lines(&text);
    }
}

fn mark(direction: Direction) -> &'static str {
    match direction {
        Direction::ClientToServer => "C: ",
        Direction::ServerToClient => "S: ",
    }
}

/// Server lines start with a reply code, `+`, `-ERR` or `*`; the rest is the client's.
fn guess_direction(text: &str) -> Direction {
    let b = text.as_bytes();
    let reply_code = b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit);
    if reply_code || text.starts_with('+') || text.starts_with("-ERR") || text.starts_with("* ") {
        Direction::ServerToClient
    } else {
        Direction::ClientToServer
    }
}

enum Guess {
    Mech(AnyMech, Direction),
    /// A JSON error challenge of XOAUTH2 or OAUTHBEARER (they look the same).
    OAuthError,
}

/// The mechanism and sender a decoded message most likely belongs to.
fn guess(bytes: &[u8]) -> Option<Guess> {
    use Direction::{ClientToServer as C, ServerToClient as S};
    let sasl = |m, d| Some(Guess::Mech(AnyMech::Sasl(m), d));
    let scram = Mechanism::ScramSha256;
    if bytes == b"Username:" || bytes == b"Password:" {
        return sasl(Mechanism::Login, S);
    }
    if bytes.len() > 2 && bytes.starts_with(b"<") && bytes.ends_with(b">") && bytes.contains(&b'@')
    {
        return sasl(Mechanism::CramMd5, S);
    }
    if bytes.iter().filter(|&&b| b == 0).count() == 2 {
        return sasl(Mechanism::Plain, C);
    }
    if bytes.starts_with(b"user=") && bytes.windows(6).any(|w| w == b"\x01auth=") {
        return Some(Guess::Mech(AnyMech::OAuth(OAuthMechanism::XOAuth2), C));
    }
    let gs2 = [&b"n,"[..], b"y,", b"p="]
        .iter()
        .any(|p| bytes.starts_with(p));
    if gs2 && bytes.contains(&0x01) {
        return Some(Guess::Mech(AnyMech::OAuth(OAuthMechanism::OAuthBearer), C));
    }
    let text = std::str::from_utf8(bytes).ok()?;
    if gs2 && (text.contains(",n=") || text.contains(",,n=")) && text.contains(",r=") {
        return sasl(scram, C);
    }
    if text.starts_with("r=") && text.contains(",s=") && text.contains(",i=") {
        return sasl(scram, S);
    }
    if text.starts_with("c=") && text.contains(",p=") {
        return sasl(scram, C);
    }
    if text.starts_with("v=") || text.starts_with("e=") {
        return sasl(scram, S);
    }
    if text.trim_start().starts_with('{') && text.contains("\"status\"") {
        return Some(Guess::OAuthError);
    }
    // CRAM-MD5 response: "user <32 hex digits>".
    if let Some((user, digest)) = text.rsplit_once(' ')
        && !user.is_empty()
        && digest.len() == 32
        && digest.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return sasl(Mechanism::CramMd5, C);
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn run(input: &str, mech: Option<AnyMech>, show: bool) -> String {
        let mut d = Decoder::new(mech, show);
        for line in input.lines() {
            d.line(line);
        }
        d.out
    }

    #[test]
    fn smtp_login_exchange() {
        let out = run(
            "AUTH LOGIN\n334 VXNlcm5hbWU6\ndXNlcm5hbWU=\n334 UGFzc3dvcmQ6\ncGFzc3dvcmQ=\n235 2.7.0 Authentication successful\n",
            None,
            false,
        );
        assert_eq!(
            out,
            "C: AUTH LOGIN\n\
             S: 334 VXNlcm5hbWU6\n   LOGIN prompt \"Username:\": the specified username prompt\n\
             C: <redacted>\n   LOGIN response: the username (first response) or the password (second)\n     value: 8 bytes, hidden\n\
             S: 334 UGFzc3dvcmQ6\n   LOGIN prompt \"Password:\": the specified password prompt\n\
             C: <redacted>\n   LOGIN response: the username (first response) or the password (second)\n     value: 8 bytes, hidden\n\
             S: 235 2.7.0 Authentication successful\n   authentication succeeded\n"
        );
    }

    #[test]
    fn imap_plain_with_continuation_and_protocol_noise() {
        let out = run(
            "S: * OK ready\nC: a1 AUTHENTICATE PLAIN\nS: +\nC: dGVzdAB0ZXN0AHRlc3RwYXNz\nS: a1 OK done\nC: a2 LOGOUT\n",
            None,
            true,
        );
        assert!(
            out.starts_with("S: * OK ready\nC: a1 AUTHENTICATE PLAIN\nS: +\n"),
            "{out}"
        );
        assert!(
            out.contains("C: dGVzdAB0ZXN0AHRlc3RwYXNz\n   PLAIN response"),
            "{out}"
        );
        assert!(out.contains("password: \"testpass\""), "{out}");
        assert!(
            out.contains("S: a1 OK done\n   authentication succeeded\nC: a2 LOGOUT\n"),
            "{out}"
        );
    }

    #[test]
    fn guesses_from_content_and_leaves_protocol_words_alone() {
        let out = run("QUIT\nUGFzc3dvcmQ6\n", None, false);
        assert!(out.starts_with("C: QUIT\nS: UGFzc3dvcmQ6\n"), "{out}");
        assert!(out.contains("guessed from the content: LOGIN"), "{out}");
        let out = run(
            "cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=\n",
            None,
            false,
        );
        assert!(out.contains("   SCRAM server-first\n"), "{out}");
        assert!(!out.contains("SHA-256"), "{out}");
    }

    #[test]
    fn server_lines() {
        let cram = AnyMech::Sasl(Mechanism::CramMd5);
        assert!(matches!(
            parse_server_line("334 PGFAYj4=", cram),
            Ok(ServerLine::Challenge(b)) if b == b"<a@b>"
        ));
        assert!(matches!(
            parse_server_line("<a@b>", cram),
            Ok(ServerLine::Challenge(b)) if b == b"<a@b>"
        ));
        assert!(
            matches!(parse_server_line("+ ", cram), Ok(ServerLine::Challenge(b)) if b.is_empty())
        );
        assert!(matches!(
            parse_server_line("535 5.7.8 no", cram),
            Ok(ServerLine::Failure(_))
        ));
        assert!(matches!(
            parse_server_line("a1 NO [AUTHENTICATIONFAILED]", cram),
            Ok(ServerLine::Failure(_))
        ));
        assert!(matches!(
            parse_server_line("+OK", cram),
            Ok(ServerLine::Success(_))
        ));
        assert!(parse_server_line("not base64!", cram).is_err());
    }
}
