//! IMAP (RFC 9051 / RFC 3501): response framing with literals and limits, grammar checks
//! with imap-codec, and the client state machine.

pub mod client;
pub mod framing;

#[cfg(test)]
mod tests;
