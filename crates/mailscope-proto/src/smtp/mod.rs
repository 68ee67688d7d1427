//! SMTP (RFC 5321) and its extensions: our own codec, because a diagnostic tool must keep
//! every byte and report every deviation.
//!
//! - [`reply`]: reply framing and parsing, enhanced status codes.
//! - [`ehlo`]: EHLO capabilities, unknown keywords kept.
//! - [`command`]: command encoders and command-line lints.
//! - [`data`]: DATA preparation (normalised and dot-stuffed, or raw) and DATA lints.
//! - [`client`]: the client state machine.
//! - [`explain`]: why a reply refused: enhanced status codes, well-known refusal texts.

pub mod client;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod explain;
pub mod reply;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod explain_tests;
