//! The sink's crash-safe message store.
//!
//! Layout under the store root:
//!
//! ```text
//! Maildir/{tmp,new,cur}/   messages only, so any mail tool can read them
//! meta/<name>.json         envelope, client, TLS and AUTH facts, findings, transcript
//! sessions/<id>.json       one file per finished session
//! ```
//!
//! Order of writes for one message (a message is visible once it is in `Maildir/new/`):
//! 1. the message to `Maildir/tmp/<name>`, fsync;
//! 2. the meta to `meta/.<name>.json.tmp`, fsync, rename to `meta/<name>.json`;
//! 3. fsync `meta/`; rename the message to `Maildir/new/<name>`; fsync `Maildir/new/`;
//! 4. only then does the caller send 250.
//!
//! A `kill -9` at any point leaves no partial message in `new/`: a message there always has
//! its meta. Leftovers (files in `tmp/`, meta files whose message never reached `new/`) are
//! removed when the store is opened.
//!
//! Writes go through one writer thread that takes every job queued while it was busy and
//! commits them together (group commit): each file is still fsynced, but the directory
//! fsyncs are shared by the batch.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::sync::oneshot;

/// Most jobs committed in one batch.
const MAX_BATCH: usize = 256;

/// Where a stored message ended up.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The Maildir file name (unique).
    pub name: String,
    /// `Maildir/new/<name>`.
    pub path: PathBuf,
    /// `meta/<name>.json`.
    pub meta_path: PathBuf,
}

enum Job {
    Message {
        name: String,
        content: Vec<u8>,
        meta: Vec<u8>,
        done: oneshot::Sender<Result<Stored, String>>,
    },
    Session {
        id: String,
        json: Vec<u8>,
    },
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    counter: std::sync::Arc<AtomicU64>,
    host: String,
}

impl Store {
    /// Opens (creating if needed) a store at `root`, cleans up what a crash left, and starts
    /// the writer thread. `max_messages` keeps only the newest N messages.
    pub fn open(root: &Path, max_messages: Option<usize>) -> Result<Store> {
        for d in [
            "Maildir/tmp",
            "Maildir/new",
            "Maildir/cur",
            "meta",
            "sessions",
        ] {
            fs::create_dir_all(root.join(d))
                .with_context(|| format!("creating {}", root.join(d).display()))?;
        }
        let existing = recover(root)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_root = root.to_path_buf();
        std::thread::Builder::new()
            .name("sink-store".into())
            .spawn(move || writer(writer_root, rx, existing, max_messages))
            .context("starting the store writer thread")?;
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().replace(['/', ':'], "_"))
            .unwrap_or_else(|_| "localhost".into());
        Ok(Store {
            tx,
            counter: Default::default(),
            host,
        })
    }

    /// A new unique Maildir name: `<secs>.M<micros>P<pid>Q<n>.<host>`.
    pub fn new_name(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{:06}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            n,
            self.host
        )
    }

    /// Stores one message durably; returns once it is visible in `Maildir/new/`.
    pub async fn store(
        &self,
        name: String,
        content: Vec<u8>,
        meta: &serde_json::Value,
    ) -> Result<Stored> {
        let meta = serde_json::to_vec_pretty(meta)?;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job::Message {
                name,
                content,
                meta,
                done,
            })
            .map_err(|_| anyhow::anyhow!("the store writer has stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("the store writer has stopped"))?
            .map_err(anyhow::Error::msg)
    }

    /// Records a finished session (best effort: a lost session record loses no mail).
    pub fn store_session(&self, id: &str, json: &serde_json::Value) {
        if let Ok(bytes) = serde_json::to_vec_pretty(json) {
            let _ = self.tx.send(Job::Session {
                id: id.to_string(),
                json: bytes,
            });
        }
    }
}

/// Removes crash leftovers; returns the names in `Maildir/new/`, oldest first.
fn recover(root: &Path) -> Result<VecDeque<String>> {
    for entry in fs::read_dir(root.join("Maildir/tmp"))? {
        let _ = fs::remove_file(entry?.path());
    }
    let mut names: Vec<String> = fs::read_dir(root.join("Maildir/new"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort_by_key(|n| name_order(n));
    let known: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    for entry in fs::read_dir(root.join("meta"))? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let orphan = match file.strip_suffix(".json") {
            Some(stem) if !stem.starts_with('.') => {
                !known.contains(stem) && !root.join("Maildir/cur").join(stem).exists()
            }
            _ => true,
        };
        if orphan {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(names.into())
}

/// Sort key: seconds, then microseconds, then the counter (names are ours).
fn name_order(name: &str) -> (u64, u64, u64) {
    let secs = name
        .split('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let micros = name
        .split(".M")
        .nth(1)
        .and_then(|s| s.split('P').next()?.parse().ok())
        .unwrap_or(0);
    let q = name
        .split('Q')
        .nth(1)
        .and_then(|s| s.split('.').next()?.parse().ok())
        .unwrap_or(0);
    (secs, micros, q)
}

fn writer(root: PathBuf, rx: mpsc::Receiver<Job>, mut kept: VecDeque<String>, max: Option<usize>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        commit(&root, batch, &mut kept, max);
    }
}

fn commit(root: &Path, batch: Vec<Job>, kept: &mut VecDeque<String>, max: Option<usize>) {
    // Group commit: with several messages in the batch, their files are written without
    // fsync and made durable together by one syncfs(2) of the store's file system, instead
    // of two fsyncs per message. Alone, a message gets its own fsyncs (cheaper than flushing
    // the whole file system for one file).
    let messages = batch
        .iter()
        .filter(|j| matches!(j, Job::Message { .. }))
        .count();
    let group = messages >= GROUP_COMMIT_MIN;
    let mut written = Vec::new();
    let mut sessions = false;
    for job in batch {
        match job {
            Job::Message {
                name,
                content,
                meta,
                done,
            } => match write_parts(root, &name, &content, &meta, !group) {
                Ok(()) => written.push((name, done)),
                Err(e) => {
                    let _ = done.send(Err(format!("storing message {name}: {e:#}")));
                }
            },
            Job::Session { id, json } => {
                let _ = write_file(
                    &root.join("sessions").join(format!("{id}.json")),
                    &json,
                    !group,
                );
                sessions = true;
            }
        }
    }
    if group && let Err(e) = sync_filesystem(root) {
        for (name, done) in written.drain(..) {
            let _ = fs::remove_file(root.join("Maildir/tmp").join(&name));
            let _ = fs::remove_file(root.join("meta").join(format!(".{name}.json.tmp")));
            let _ = done.send(Err(format!("storing message {name}: {e:#}")));
        }
    }
    let mut pending = Vec::new();
    for (name, done) in written {
        let tmp = root.join("meta").join(format!(".{name}.json.tmp"));
        match fs::rename(&tmp, root.join("meta").join(format!("{name}.json"))) {
            Ok(()) => pending.push((name, done)),
            Err(e) => {
                let _ = fs::remove_file(root.join("Maildir/tmp").join(&name));
                let _ = done.send(Err(format!("storing message {name}: {e}")));
            }
        }
    }
    if pending.is_empty() {
        if sessions {
            let _ = sync_dir(&root.join("sessions"));
        }
        return;
    }
    let meta_synced = sync_dir(&root.join("meta"));
    let mut moved = Vec::new();
    for (name, done) in pending {
        let from = root.join("Maildir/tmp").join(&name);
        let to = root.join("Maildir/new").join(&name);
        match meta_synced
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|()| fs::rename(&from, &to).map_err(|e| e.to_string()))
        {
            Ok(()) => moved.push((name, to, done)),
            Err(e) => {
                let _ = fs::remove_file(&from);
                let _ = done.send(Err(format!("storing message {name}: {e}")));
            }
        }
    }
    let new_synced = sync_dir(&root.join("Maildir/new")).map_err(|e| e.to_string());
    if sessions {
        let _ = sync_dir(&root.join("sessions"));
    }
    let mut replies = Vec::with_capacity(moved.len());
    for (name, path, done) in moved {
        let meta_path = root.join("meta").join(format!("{name}.json"));
        let result = new_synced.clone().map(|()| Stored {
            name: name.clone(),
            path,
            meta_path,
        });
        if result.is_ok() {
            kept.push_back(name);
        }
        replies.push((done, result));
    }
    // Retention before the replies: when a caller hears "stored", the store is already
    // within its limit (a test, or a user listing the Maildir, sees a settled state).
    if let Some(max) = max {
        while kept.len() > max {
            if let Some(old) = kept.pop_front() {
                let _ = fs::remove_file(root.join("Maildir/new").join(&old));
                let _ = fs::remove_file(root.join("Maildir/cur").join(&old));
                let _ = fs::remove_file(root.join("meta").join(format!("{old}.json")));
            }
        }
    }
    for (done, result) in replies {
        let _ = done.send(result.map_err(|e| format!("storing message: {e}")));
    }
}

/// Batches with at least this many messages are made durable with one syncfs.
const GROUP_COMMIT_MIN: usize = 3;

fn write_parts(root: &Path, name: &str, content: &[u8], meta: &[u8], sync: bool) -> Result<()> {
    write_file(&root.join("Maildir/tmp").join(name), content, sync)?;
    write_file(
        &root.join("meta").join(format!(".{name}.json.tmp")),
        meta,
        sync,
    )?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    if sync {
        f.sync_data()
            .with_context(|| format!("fsync {}", path.display()))?;
    }
    Ok(())
}

/// Flushes the file system that holds the store (syncfs(2)).
fn sync_filesystem(root: &Path) -> Result<()> {
    let dir = File::open(root).with_context(|| format!("opening {}", root.display()))?;
    rustix::fs::syncfs(&dir).with_context(|| format!("syncfs {}", root.display()))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_visible_messages_with_meta_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Some(3)).unwrap();
        let mut names = Vec::new();
        for i in 0..5u8 {
            let name = store.new_name();
            let s = store
                .store(
                    name.clone(),
                    vec![b'x', i, b'\n'],
                    &serde_json::json!({ "i": i }),
                )
                .await
                .unwrap();
            assert_eq!(fs::read(&s.path).unwrap(), vec![b'x', i, b'\n']);
            assert!(s.meta_path.exists());
            names.push(name);
        }
        // Retention: only the 3 newest remain, with their meta.
        let left = fs::read_dir(dir.path().join("Maildir/new"))
            .unwrap()
            .count();
        assert_eq!(left, 3);
        assert!(!dir.path().join("Maildir/new").join(&names[0]).exists());
        assert!(
            !dir.path()
                .join("meta")
                .join(format!("{}.json", names[1]))
                .exists()
        );
        assert!(
            dir.path()
                .join("meta")
                .join(format!("{}.json", names[4]))
                .exists()
        );
        assert_eq!(
            fs::read_dir(dir.path().join("Maildir/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn opening_removes_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), None).unwrap();
            let name = store.new_name();
            store
                .store(name, b"kept".to_vec(), &serde_json::json!({}))
                .await
                .unwrap();
        }
        // What a kill -9 between the steps leaves: a tmp message, a tmp meta, an orphan meta.
        fs::write(dir.path().join("Maildir/tmp/1.M1P1Q1.h"), b"partial").unwrap();
        fs::write(dir.path().join("meta/.1.M1P1Q1.h.json.tmp"), b"{").unwrap();
        fs::write(dir.path().join("meta/2.M1P1Q2.h.json"), b"{}").unwrap();
        let _store = Store::open(dir.path(), None).unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join("Maildir/tmp"))
                .unwrap()
                .count(),
            0
        );
        let metas: Vec<_> = fs::read_dir(dir.path().join("meta"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(metas.len(), 1, "{metas:?}");
        assert_eq!(
            fs::read_dir(dir.path().join("Maildir/new"))
                .unwrap()
                .count(),
            1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_stores_are_group_committed_and_all_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let name = store.new_name();
                store
                    .store(
                        name,
                        format!("message {i}\r\n").into_bytes(),
                        &serde_json::json!({ "i": i }),
                    )
                    .await
            }));
        }
        for t in tasks {
            let stored = t.await.unwrap().unwrap();
            assert!(stored.path.exists() && stored.meta_path.exists());
        }
        assert_eq!(
            fs::read_dir(dir.path().join("Maildir/new"))
                .unwrap()
                .count(),
            40
        );
        assert_eq!(fs::read_dir(dir.path().join("meta")).unwrap().count(), 40);
        assert_eq!(
            fs::read_dir(dir.path().join("Maildir/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn names_sort_by_time_then_counter() {
        let mut v = [
            "10.M000002P1Q0.h",
            "9.M999999P1Q5.h",
            "10.M000002P1Q10.h",
            "10.M000001P1Q99.h",
        ];
        v.sort_by_key(|n| name_order(n));
        assert_eq!(
            v,
            [
                "9.M999999P1Q5.h",
                "10.M000001P1Q99.h",
                "10.M000002P1Q0.h",
                "10.M000002P1Q10.h"
            ]
        );
    }
}
