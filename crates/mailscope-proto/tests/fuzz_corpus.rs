//! Replays every file of every `fuzz/corpus/<target>/` directory through the same harness
//! bodies the cargo-fuzz targets run (`fuzz/harness.rs`), so CI exercises the corpora — and
//! every crash once found, kept there as a regression input — as ordinary tests. Real fuzzing
//! runs outside CI (see `fuzz/README.md`).

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/harness.rs"]
mod harness;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str) {
    let run = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no harness for {target}"));
    let dir = corpus_root().join(target);
    let inputs = files(&dir);
    assert!(
        !inputs.is_empty(),
        "{} is empty: the corpus replay refuses to pass without inputs",
        dir.display()
    );
    for path in inputs {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} fails (input, escaped: {})",
            path.display(),
            mailscope_proto::escape::escape(&data[..data.len().min(300)])
        );
    }
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let root = corpus_root();
    for (name, _) in harness::TARGETS {
        assert!(root.join(name).is_dir(), "no corpus directory for {name}");
    }
    for dir in std::fs::read_dir(&root).expect("fuzz/corpus").flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        assert!(
            harness::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} has no target in fuzz/harness.rs"
        );
    }
}

#[test]
fn smtp_reply() {
    replay("smtp_reply");
}

#[test]
fn smtp_ehlo() {
    replay("smtp_ehlo");
}

#[test]
fn smtp_client() {
    replay("smtp_client");
}

#[test]
fn sasl_client() {
    replay("sasl_client");
}

#[test]
fn sasl_server() {
    replay("sasl_server");
}

#[test]
fn escape() {
    replay("escape");
}

#[test]
fn pop3_response() {
    replay("pop3_response");
}

#[test]
fn pop3_client() {
    replay("pop3_client");
}

#[test]
fn imap_framing() {
    replay("imap_framing");
}

#[test]
fn imap_client() {
    replay("imap_client");
}

#[test]
fn smtp_server() {
    replay("smtp_server");
}
