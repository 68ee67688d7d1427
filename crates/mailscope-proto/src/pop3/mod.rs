//! POP3 (RFC 1939, RFC 2449, RFC 2595, RFC 5034): the response decoder and the client
//! machine.

pub mod client;
pub mod response;

#[cfg(test)]
mod tests;
