//! `mailscope completions SHELL` and `mailscope man`: both generated from the clap
//! definitions in `cli.rs`, so they cannot drift from the options. Also the stdout helpers the
//! tool commands (`sasl`, `base64`, these two) share: a closed pipe (`| head -1`) ends them
//! quietly with exit 0 instead of an error or a panic.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::ExitCode;
use crate::cli::{Cli, GlobalArgs};

pub const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  mailscope completions bash > ~/.local/share/bash-completion/completions/mailscope
  mailscope completions zsh > ~/.zfunc/_mailscope
  mailscope completions fish > ~/.config/fish/completions/mailscope.fish
  mailscope completions powershell >> $PROFILE";

pub const MAN_EXAMPLES: &str = "\
Examples:
  mailscope man | man -l -
  mailscope man --dir /usr/local/share/man/man1
  mailscope man --dir docs/man

With --dir, one page per command and subcommand (mailscope.1, mailscope-smtp.1,
mailscope-sasl-plain.1, ...); without it, the page of mailscope itself on stdout.";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command and subcommand into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Runs `mailscope completions`.
pub fn run_completions(global: &GlobalArgs, args: &CompletionsArgs) -> Result<ExitCode> {
    reject_json(global, "completions")?;
    // clap_complete::generate panics when its writer fails (a closed pipe), so it writes
    // into memory and the bytes go out through write_stdout, which treats EPIPE as success.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "mailscope", &mut script);
    quiet_on_closed_pipe(
        write_stdout(&script)
            .map(|()| ExitCode(0))
            .map_err(Into::into),
    )
}

/// Runs `mailscope man`.
pub fn run_man(global: &GlobalArgs, args: &ManArgs) -> Result<ExitCode> {
    reject_json(global, "man")?;
    let pages = man_pages()?;
    match &args.dir {
        None => {
            let (_, page) = pages
                .into_iter()
                .find(|(name, _)| name == "mailscope.1")
                .context("no page for mailscope itself")?;
            quiet_on_closed_pipe(
                write_stdout(&page)
                    .map(|()| ExitCode(0))
                    .map_err(Into::into),
            )
        }
        Some(dir) => {
            write_pages(dir, &pages)?;
            Ok(ExitCode(0))
        }
    }
}

/// Every man page as (file name, roff text): `mailscope.1`, then one per subcommand at any
/// depth (`mailscope-sasl-plain.1`), as clap_mangen's `generate_to` names them.
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    fn collect(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        let man = clap_mangen::Man::new(cmd.clone());
        let mut page = Vec::new();
        man.render(&mut page)
            .with_context(|| format!("rendering the man page of {}", cmd.get_name()))?;
        out.push((man.get_filename(), page));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            collect(sub, out)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building sets each subcommand's display name to `mailscope-sasl-plain` and propagates
    // the global options, which is what the pages show.
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages)?;
    Ok(pages)
}

fn write_pages(dir: &Path, pages: &[(String, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, page) in pages {
        let path = dir.join(name);
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `--json` promises only events on stdout, and these commands have none to give.
pub fn reject_json(global: &GlobalArgs, command: &str) -> Result<()> {
    if global.json {
        return Err(anyhow::Error::new(crate::UsageError(format!(
            "`mailscope {command}` has no JSON output; leave out --json"
        ))));
    }
    Ok(())
}

/// Writes everything to stdout and flushes.
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Turns a write into a closed pipe (`mailscope ... | head -1`) into a quiet exit 0: the
/// reader has all it wanted. Rust ignores SIGPIPE, so the write fails with EPIPE instead of
/// killing the process (no exit 141).
pub fn quiet_on_closed_pipe(result: Result<ExitCode>) -> Result<ExitCode> {
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode(0)),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every subcommand at every depth shows examples in its `--help` (design: CLI
    /// conventions). A new subcommand without `after_help` fails here.
    #[test]
    fn every_subcommand_has_examples_in_its_long_help() {
        fn check(cmd: &mut clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands_mut() {
                if sub.get_name() == "help" {
                    continue;
                }
                let path = format!("{path} {}", sub.get_name());
                let help = sub.render_long_help().to_string();
                if !help.contains("Examples:") {
                    missing.push(path.clone());
                }
                check(sub, &path, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        check(&mut cmd, "mailscope", &mut missing);
        assert!(
            missing.is_empty(),
            "no Examples: in the help of {missing:?}"
        );
    }

    #[test]
    fn man_pages_cover_every_subcommand() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "mailscope.1",
            "mailscope-smtp.1",
            "mailscope-sasl.1",
            "mailscope-sasl-decode.1",
            "mailscope-base64-encode.1",
            "mailscope-completions.1",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(pages.iter().all(|(_, p)| !p.is_empty()));
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let e = anyhow::Error::new(std::io::Error::from(ErrorKind::BrokenPipe)).context("writing");
        assert_eq!(quiet_on_closed_pipe(Err(e)).unwrap(), ExitCode(0));
        let other = anyhow::Error::new(std::io::Error::from(ErrorKind::NotFound));
        assert!(quiet_on_closed_pipe(Err(other)).is_err());
    }
}
