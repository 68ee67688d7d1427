//! `cargo fuzz run pop3_response`: see fuzz/README.md and the body in fuzz/harness.rs.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::pop3_response(data));
