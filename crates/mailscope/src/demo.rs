//! `mailscope demo`: the main job on a fresh machine. Starts the loopback peers
//! (scripts/peers) and runs seed 000's reproduction: a message with bare LF line ends sent
//! `--raw` to a Postfix that refuses bare LFs (550 5.5.2, exit 26, bare-LF findings), then the
//! same file normalised (accepted).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ExitCode;
use crate::cli::{DemoArgs, GlobalArgs};

/// The seed-000 message: a newsletter whose lines end in bare LF.
pub const BARE_LF_MESSAGE: &[u8] = b"From: newsletter@example.test\nTo: bob@example.test\nSubject: seed 000 - bare LF line ends\n\nThis newsletter was written with bare LF line ends,\nas the customer's mailing software did.\n";

pub async fn run(global: &GlobalArgs, args: &DemoArgs) -> Result<ExitCode> {
    let root = repo_root()?;
    if !args.no_start {
        let status = Command::new("bash")
            .arg(root.join("scripts/peers"))
            .arg("start")
            .status()
            .context("running scripts/peers start")?;
        if !status.success() {
            bail!("scripts/peers start failed (run `scripts/peers install` first, as root)");
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
        println!(
            "\n##### {} #####",
            if raw {
                "1. the file sent --raw, bare LFs and all: Postfix refuses it (expect exit 26)"
            } else {
                "2. the same file, normalised to CRLF: accepted (expect exit 0)"
            }
        );
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
        if global.json {
            cmd.arg("--json");
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
                "run `mailscope demo` from inside the mailscope repository (it needs scripts/peers)"
            );
        }
    }
}
