//! Defaults a user repeats: `$XDG_CONFIG_HOME/mailscope/config.toml` (or
//! `~/.config/mailscope/config.toml`) and `MAILSCOPE_<OPTION>` variables. `--no-config` ignores
//! both. Precedence: command line > environment > config file.
//!
//! They are applied by inserting `--option value` right after the subcommand name, before the
//! user's own arguments; clap's `args_override_self` lets the user's later occurrence win.
//! Only single-valued options and flags can have defaults (a default `--to` that silently
//! joins the user's recipients would be a trap).
//!
//! ```toml
//! [smtp]
//! server = "mail.example.net:587"
//! tls = true
//! auth-user = "alice"
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Options of each subcommand that may come from the config file or environment:
/// (subcommand, option, takes a value).
const DEFAULTABLE: &[(&str, &str, bool)] = &[
    ("smtp", "server", true),
    ("smtp", "port", true),
    ("smtp", "from", true),
    ("smtp", "helo", true),
    ("smtp", "auth-user", true),
    ("smtp", "auth-password-file", true),
    ("smtp", "timeout", true),
    ("smtp", "tls-sni", true),
    ("smtp", "keylog", true),
    ("smtp", "tls", false),
    ("smtp", "tls-on-connect", false),
    ("smtp", "insecure", false),
    ("smtp", "fail-on", true),
];

/// The argument list with config and environment defaults inserted.
pub fn effective_args(args: Vec<OsString>) -> Result<Vec<OsString>> {
    if args.iter().any(|a| a == "--no-config") {
        return Ok(args);
    }
    let file = load_file()?;
    apply_defaults(args, |name| std::env::var(name).ok(), file.as_ref())
}

/// The position of the subcommand: the first argument that is not an option (global options
/// before it are flags, except `--fail-on VALUE`).
fn subcommand_position(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--fail-on" {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

fn apply_defaults(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<String>,
    file: Option<&toml::Table>,
) -> Result<Vec<OsString>> {
    let Some(pos) = subcommand_position(&args) else {
        return Ok(args);
    };
    let sub = args[pos].to_string_lossy().into_owned();
    let mut inserted: Vec<OsString> = Vec::new();
    for (cmd, opt, takes_value) in DEFAULTABLE.iter().filter(|(c, _, _)| *c == sub) {
        let env_name = format!("MAILSCOPE_{}", opt.to_ascii_uppercase().replace('-', "_"));
        let value = match env(&env_name) {
            Some(v) => Some(v),
            None => file.and_then(|t| lookup(t, cmd, opt)).transpose()?,
        };
        let Some(value) = value else { continue };
        if *takes_value {
            inserted.push(format!("--{opt}").into());
            inserted.push(value.into());
        } else {
            match value.as_str() {
                "1" | "true" | "yes" => inserted.push(format!("--{opt}").into()),
                "0" | "false" | "no" | "" => {}
                other => {
                    bail!("{env_name} or config key {opt} must be true or false, not {other:?}")
                }
            }
        }
    }
    let mut out = args[..=pos].to_vec();
    out.extend(inserted);
    out.extend_from_slice(&args[pos + 1..]);
    Ok(out)
}

fn config_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("mailscope/config.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/mailscope/config.toml"))
}

fn load_file() -> Result<Option<toml::Table>> {
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(table))
}

fn lookup(table: &toml::Table, cmd: &str, opt: &str) -> Option<Result<String>> {
    let v = table.get(cmd)?.as_table()?.get(opt)?;
    Some(match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(anyhow::anyhow!(
            "config key [{cmd}] {opt} has an unsupported type: {other}"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "MAILSCOPE_SERVER" => Some("mx.example.test".into()),
            "MAILSCOPE_TLS" => Some("true".into()),
            _ => None,
        }
    }

    #[test]
    fn defaults_go_right_after_the_subcommand() {
        let got = apply_defaults(
            args(&["mailscope", "--json", "smtp", "--to", "a@b"]),
            env,
            None,
        )
        .unwrap();
        assert_eq!(
            got,
            args(&[
                "mailscope",
                "--json",
                "smtp",
                "--server",
                "mx.example.test",
                "--tls",
                "--to",
                "a@b"
            ])
        );
        let file: toml::Table = "[smtp]\nhelo = \"client.example.test\"\nserver = \"ignored\"\n"
            .parse()
            .unwrap();
        let got = apply_defaults(args(&["mailscope", "smtp"]), env, Some(&file)).unwrap();
        assert!(
            got.contains(&"client.example.test".into()) && got.contains(&"mx.example.test".into())
        );
        assert!(
            !got.contains(&"ignored".into()),
            "the environment wins over the file"
        );
    }

    #[test]
    fn the_subcommand_is_the_first_non_option() {
        // `smtp` as an option's value of another subcommand must not get smtp defaults.
        let a = args(&["mailscope", "sasl", "plain", "--user", "smtp"]);
        assert_eq!(apply_defaults(a.clone(), env, None).unwrap(), a);
        let a = args(&["mailscope", "--fail-on", "smtp", "base64"]);
        assert_eq!(apply_defaults(a.clone(), env, None).unwrap(), a);
    }

    #[test]
    fn bad_boolean_is_an_error() {
        let e = apply_defaults(
            args(&["mailscope", "smtp"]),
            |n| (n == "MAILSCOPE_TLS").then(|| "maybe".into()),
            None,
        );
        assert!(e.unwrap_err().to_string().contains("must be true or false"));
    }
}
