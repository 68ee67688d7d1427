//! `mailscope demo`: the main job on a fresh machine, with nothing installed.
//!
//! Starts `mailscope sink` on a free loopback port (generated CA, temporary store), runs a
//! complete `mailscope smtp` transaction against it with STARTTLS and SCRAM AUTH, then sends a
//! message with bare LF line ends `--raw` (seed 000), shows both client transcripts, and what
//! the sink recorded: its findings about what the client sent. Every step is a real process
//! talking over loopback TCP.
//!
//! `--postfix` runs seed 000 against the real Postfix of `scripts/peers` instead: the raw
//! bare-LF message refused with `550 5.5.2` (exit 26), the normalised one accepted.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use crate::ExitCode;
use crate::cli::GlobalArgs;

pub const DEMO_EXAMPLES: &str = "\
Examples:
  mailscope demo                # sink on loopback + STARTTLS/AUTH transaction + raw bare-LF message
  mailscope demo --escape       # show every CR and LF
  mailscope demo --postfix      # seed 000 against the loopback Postfix (bash scripts/peers install first)";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run seed 000 against the real Postfix of scripts/peers (starts them) instead of the
    /// built-in sink.
    #[arg(long)]
    pub postfix: bool,
    /// With --postfix: do not start the peers (they already run).
    #[arg(long, requires = "postfix")]
    pub no_start: bool,
}

/// The seed-000 message: a newsletter whose lines end in bare LF.
pub const BARE_LF_MESSAGE: &[u8] = b"From: newsletter@example.test\nTo: bob@example.test\nSubject: seed 000 - bare LF line ends\n\nThis newsletter was written with bare LF line ends,\nas the customer's mailing software did.\n";

pub async fn run(global: &GlobalArgs, args: &DemoArgs) -> Result<ExitCode> {
    if args.postfix {
        return postfix_demo(global, args);
    }
    sink_demo(global)
}

fn heading(text: &str) {
    println!("\n##### {text} #####");
}

fn sink_demo(global: &GlobalArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the mailscope binary")?;
    let dir = std::env::temp_dir().join(format!("mailscope-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = dir.join("store");
    heading("starting `mailscope sink` on a free loopback port");
    let mut sink = Command::new(&exe)
        .args([
            "--json",
            "sink",
            "--no-config",
            "--listen",
            "smtp://127.0.0.1:0",
            "--exit-after",
            "2",
        ])
        .arg("--store")
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mailscope sink")?;
    let stdout = sink.stdout.take().context("sink stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listener = None;
    while listener.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["type"] == "sink_started" {
            listener = v["listeners"][0].as_str().map(str::to_string);
        }
    }
    let Some(listener) = listener else {
        let _ = sink.kill();
        bail!("the sink did not start");
    };
    let addr = listener.trim_start_matches("smtp://").to_string();
    let ca = store.join("tls/ca.pem");
    println!(
        "*** sink listening on {listener}; its generated CA is {}",
        ca.display()
    );
    // Collect what the sink reports while the clients run.
    let collector =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());

    let raw_file = dir.join("bare-lf.eml");
    std::fs::write(&raw_file, BARE_LF_MESSAGE)?;
    let mut codes = Vec::new();
    let runs: [(&str, Vec<String>); 2] = [
        (
            "1. a complete transaction: STARTTLS (certificate verified against the sink's CA), AUTH with the best mechanism offered, swaks' default test message",
            vec![
                "--tls".into(),
                "--tls-ca-path".into(),
                ca.display().to_string(),
                "--auth".into(),
                "--auth-user".into(),
                "demo@example.test".into(),
                "--header".into(),
                "Subject: mailscope demo".into(),
                "--body".into(),
                "Hello from mailscope.".into(),
            ],
        ),
        (
            "2. seed 000: the newsletter with bare LF line ends, sent --raw, byte for byte",
            vec![
                "--data".into(),
                format!("@{}", raw_file.display()),
                "--raw".into(),
            ],
        ),
    ];
    for (title, extra) in runs {
        heading(title);
        let mut cmd = Command::new(&exe);
        cmd.args([
            "smtp",
            "--no-config",
            "--server",
            &addr,
            "--from",
            "demo@example.test",
            "--to",
            "bob@example.test",
        ]);
        cmd.args(&extra);
        if global.escape {
            cmd.arg("--escape");
        }
        // The sink's documented accept-any SCRAM password (see `mailscope sink --help`).
        cmd.env("MAILSCOPE_PASSWORD", "mailscope");
        let status = cmd.status().context("running mailscope smtp")?;
        let code = status.code().unwrap_or(-1);
        println!("##### exit code {code}");
        codes.push(code);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = sink.kill();
    let _ = sink.wait();
    let events: Vec<Value> = collector
        .join()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    heading("what the sink recorded");
    let mut sink_findings = 0;
    for e in &events {
        match e["type"].as_str() {
            Some("message_received") => {
                println!(
                    "*** message from <{}> to {}: {} bytes, stored as {}",
                    e["from"].as_str().unwrap_or_default(),
                    e["rcpts"],
                    e["size"],
                    e["stored_as"].as_str().unwrap_or("-")
                );
                for f in e["findings"].as_array().into_iter().flatten() {
                    sink_findings += 1;
                    println!(
                        "***   finding {} [{}] at client offset {}: {}",
                        f["id"].as_str().unwrap_or_default(),
                        f["severity"].as_str().unwrap_or_default(),
                        f["offset"],
                        f["detail"].as_str().unwrap_or_default()
                    );
                }
            }
            Some("client_closed") => println!(
                "*** session {} from {} ended: {}, TLS {}, {} message(s)",
                e["connection"],
                e["peer"].as_str().unwrap_or_default(),
                e["reason"].as_str().unwrap_or_default(),
                e["tls"],
                e["messages"]
            ),
            _ => {}
        }
    }
    println!(
        "*** messages are in {}",
        store.join("Maildir/new").display()
    );
    if codes == [0, 0] && sink_findings > 0 {
        println!(
            "\ndemo done: both transactions accepted; the sink found the bare LFs the second client sent (seed 000)"
        );
        Ok(ExitCode(0))
    } else {
        println!("\nunexpected: client exit codes {codes:?}, {sink_findings} sink findings");
        Ok(ExitCode(1))
    }
}

fn postfix_demo(global: &GlobalArgs, args: &DemoArgs) -> Result<ExitCode> {
    let root = repo_root()?;
    if !args.no_start {
        let status = Command::new("bash")
            .arg(root.join("scripts/peers"))
            .arg("start")
            .status()
            .context("running scripts/peers start")?;
        if !status.success() {
            bail!("scripts/peers start failed (run `bash scripts/peers install` first, as root)");
        }
    }
    let env = std::fs::read_to_string(root.join(".peers/env")).context("reading .peers/env")?;
    let postfix = env
        .lines()
        .find_map(|l| l.strip_prefix("PEER_POSTFIX="))
        .context("PEER_POSTFIX missing from .peers/env")?
        .to_string();
    let dir = std::env::temp_dir().join(format!("mailscope-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bare-lf.eml");
    std::fs::write(&file, BARE_LF_MESSAGE)?;
    let exe = std::env::current_exe().context("locating the mailscope binary")?;
    let mut codes = Vec::new();
    for raw in [true, false] {
        heading(if raw {
            "1. the file sent --raw, bare LFs and all: Postfix refuses it (expect exit 26)"
        } else {
            "2. the same file, normalised to CRLF: accepted (expect exit 0)"
        });
        let mut cmd = Command::new(&exe);
        cmd.args([
            "smtp",
            "--no-config",
            "--server",
            &postfix,
            "--from",
            "newsletter@example.test",
            "--to",
            "bob@example.test",
        ]);
        cmd.arg("--data").arg(format!("@{}", file.display()));
        if raw {
            cmd.arg("--raw");
        }
        if global.escape {
            cmd.arg("--escape");
        }
        let status = cmd.status().context("running mailscope smtp")?;
        let code = status.code().unwrap_or(-1);
        println!("##### exit code {code}");
        codes.push(code);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if codes == [26, 0] {
        println!(
            "\nseed 000 reproduced: raw bare LFs refused after the final dot (26), normalised message accepted (0)"
        );
        Ok(ExitCode(0))
    } else {
        println!("\nunexpected exit codes {codes:?} (expected [26, 0])");
        Ok(ExitCode(1))
    }
}

fn repo_root() -> Result<PathBuf> {
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("scripts/peers").exists() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!(
                "run `mailscope demo --postfix` from inside the mailscope repository (it needs scripts/peers)"
            );
        }
    }
}
