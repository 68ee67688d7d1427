//! Where a login password comes from, the same for every client command: `--auth-password`
//! (visible in `ps`: discouraged), `--auth-password-file FILE` (first line),
//! `MAILSCOPE_PASSWORD`, or a prompt on a terminal. A secret from here is a [`Secret`].

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use mailscope_proto::Secret;

/// The password from the first source that has one.
pub fn password(
    arg: Option<&String>,
    file: Option<&PathBuf>,
    what: &str,
) -> Result<Secret<String>> {
    if let Some(p) = arg {
        return Ok(Secret::new(p.clone()));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::UsageError(format!(
                "cannot read --auth-password-file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(Secret::new(
            text.lines().next().unwrap_or_default().to_string(),
        ));
    }
    if let Ok(p) = std::env::var("MAILSCOPE_PASSWORD") {
        return Ok(Secret::new(p));
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("{what} password: "))
            .map(Secret::new)
            .context("reading the password");
    }
    bail!(crate::UsageError(format!(
        "{what} needs a password: --auth-password, --auth-password-file, MAILSCOPE_PASSWORD, or a terminal to prompt on"
    )))
}
