//! SMTP (RFC 5321) and its extensions: our own codec, because a diagnostic tool must keep
//! every byte and report every deviation.
//!
//! - [`reply`]: reply framing and parsing, enhanced status codes.
//! - [`ehlo`]: EHLO capabilities, unknown keywords kept.
//! - [`command`]: command encoders and command-line lints.
//! - [`data`]: DATA preparation (normalised and dot-stuffed, or raw) and DATA lints.
//! - [`client`]: the client state machine.
//! - [`request`]: the server's command parser (every byte kept, deviations as findings).
//! - [`receiver`]: DATA and BDAT receivers (exact end of data, smuggling detection).
//! - [`server`]: the server state machine (the sink).
//! - [`explain`]: why a reply refused: enhanced status codes, well-known refusal texts.

pub mod client;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod explain;
pub mod receiver;
pub mod reply;
pub mod request;
pub mod server;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod explain_tests;
#[cfg(test)]
mod server_tests;
