//! # mailscope-proto
//!
//! The pure protocol core of mailscope: transcripts, findings, secrets, the escape grammar,
//! and the SMTP and SASL codecs and state machines.
//!
//! What it does **not** do: no I/O, no sockets, no async runtime, no clock, no randomness,
//! no environment, no printing. Bytes come in through `handle_*` calls, bytes to send and
//! events come out through `poll_*` calls, and time and nonces are passed in by the caller
//! (`mailscope-net` drives the machines over TCP and TLS; a blocking driver works as well —
//! see `examples/blocking_smtp.rs`).
//!
//! ```text
//!  peer bytes ──handle_input──▶ [ machine ] ──poll_transmit──▶ bytes to send
//!  caller time ─handle_timeout─▶ [         ] ──poll_event────▶ ReplyReceived, StartTlsRequested, Finding…
//! ```

pub mod escape;
pub mod finding;
pub mod greeting;
pub mod imap;
pub mod pop3;
pub mod sasl;
pub mod secret;
pub mod smtp;
pub mod transcript;

pub use finding::{Finding, FindingKind, Severity};
pub use secret::Secret;
pub use transcript::{Direction, Timestamp, Transcript};
