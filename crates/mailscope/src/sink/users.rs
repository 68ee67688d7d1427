//! `--auth-users FILE`: Dovecot's passwd-file syntax, so one file serves the sink and Dovecot.
//!
//! ```text
//! alice@example.test:{PLAIN}correct-horse-battery::::::
//! test:testpass
//! ```
//!
//! `user:password[:uid:gid:gecos:home:shell:extra]`; `#` starts a comment line. Passwords must
//! be cleartext (`{PLAIN}`, `{CLEARTEXT}` or no scheme): CRAM-MD5 and SCRAM need the
//! password itself, so a hashed scheme is refused with a clear error naming the line.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use mailscope_proto::Secret;
use mailscope_proto::sasl::PasswordLookup;

/// Users and their cleartext passwords.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<String, Secret<String>>,
}

impl Users {
    /// Reads a passwd-file.
    pub fn load(path: &Path) -> Result<Users> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --auth-users {}", path.display()))?;
        Users::parse(&text).with_context(|| format!("in --auth-users {}", path.display()))
    }

    /// Parses passwd-file text.
    pub fn parse(text: &str) -> Result<Users> {
        let mut by_name = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(3, ':');
            let user = fields.next().unwrap_or_default();
            let Some(password) = fields.next() else {
                bail!("line {}: expected user:password", i + 1);
            };
            if user.is_empty() {
                bail!("line {}: empty user name", i + 1);
            }
            let password = match password.strip_prefix('{').and_then(|p| p.split_once('}')) {
                Some((scheme, rest))
                    if scheme.eq_ignore_ascii_case("PLAIN")
                        || scheme.eq_ignore_ascii_case("CLEARTEXT") =>
                {
                    rest
                }
                Some((scheme, _)) => bail!(
                    "line {}: password scheme {{{scheme}}} is hashed; the sink needs cleartext passwords ({{PLAIN}}) to serve CRAM-MD5 and SCRAM",
                    i + 1
                ),
                None => password,
            };
            if by_name
                .insert(user.to_string(), Secret::new(password.to_string()))
                .is_some()
            {
                bail!("line {}: user {user:?} appears twice", i + 1);
            }
        }
        Ok(Users { by_name })
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

impl PasswordLookup for Users {
    fn password(&self, authcid: &str) -> Option<Secret<String>> {
        self.by_name.get(authcid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_syntax() {
        let u = Users::parse("# users\nalice@example.test:{PLAIN}correct-horse::::::\ntest:testpass\nbob:{CLEARTEXT}a:b\n").unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(
            u.password("alice@example.test").unwrap().expose(),
            "correct-horse"
        );
        assert_eq!(u.password("test").unwrap().expose(), "testpass");
        assert_eq!(u.password("bob").unwrap().expose(), "a");
        assert!(u.password("carol").is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let e = Users::parse("ok:pw\nx:{SHA512-CRYPT}$6$abc\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("SHA512-CRYPT"), "{e}");
        assert!(
            Users::parse("lonely\n")
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        assert!(
            Users::parse("a:1\na:2\n")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
