//! TLS key log in the NSS format Wireshark and our own capture decoder read.
//!
//! Writing key material is a deliberate act the user must see: whoever builds a client with
//! a key log gets the path back (`TlsReport::keylog_path`) to print the `***` note.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cert::hex;
use crate::error::NetError;

/// Appends `{label} {client_random hex} {secret hex}` lines to one file.
///
/// The file is created with mode 0600 on Unix (the secrets decrypt the session); an existing
/// file keeps its permissions. Each line is written with a single `write` under a lock, so
/// concurrent sessions (blast, proxy) do not interleave inside a line.
#[derive(Debug)]
pub struct KeyLogWriter {
    path: PathBuf,
    file: Mutex<File>,
    first_error: Mutex<Option<String>>,
}

impl KeyLogWriter {
    /// Opens `path` for appending, creating it if needed. Failing here, before any
    /// handshake, is the point: a key log that silently does not get written is useless.
    pub fn create(path: &Path) -> Result<Self, NetError> {
        let mut opts = OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let file = opts.open(path).map_err(|source| NetError::KeyLogOpen {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            first_error: Mutex::new(None),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first write error, if any: rustls' `KeyLog::log` cannot return one, so it is kept
    /// here for the report.
    pub fn error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl rustls::KeyLog for KeyLogWriter {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        let result = self
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(line.as_bytes());
        if let Err(e) = result {
            let mut slot = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(format!(
                    "cannot write key log file {}: {e}",
                    self.path.display()
                ));
            }
        }
    }
}

/// The key log path named by `SSLKEYLOGFILE`, if set and non-empty.
///
/// We read the variable ourselves and write with [`KeyLogWriter`] instead of using
/// `rustls::KeyLogFile`, so the file gets mode 0600, open errors surface before the
/// handshake, and the caller learns the path for its `***` note.
pub fn keylog_path_from_env() -> Option<PathBuf> {
    std::env::var_os("SSLKEYLOGFILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::KeyLog as _;

    #[test]
    fn writes_nss_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.log");
        let w = KeyLogWriter::create(&path).expect("create");
        w.log("CLIENT_RANDOM", &[0xab, 0x01], &[0xff]);
        w.log("EXPORTER_SECRET", &[0x00], &[0x10, 0x20]);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "CLIENT_RANDOM ab01 ff\nEXPORTER_SECRET 00 1020\n");
        assert!(w.error().is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn open_error_names_the_file() {
        let e = KeyLogWriter::create(Path::new("/nonexistent-dir/keys.log")).expect_err("fails");
        assert!(e.to_string().contains("/nonexistent-dir/keys.log"), "{e}");
    }
}
