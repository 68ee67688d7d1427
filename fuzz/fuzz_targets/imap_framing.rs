//! `cargo fuzz run imap_framing`: see fuzz/README.md and the body in fuzz/harness.rs.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::imap_framing(data));
