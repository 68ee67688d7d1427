//! Sender-authentication checks for `mailscope check`, `spf`, `dkim`, `dmarc` and `dnsbl`:
//! every verdict comes with the DNS answers it rests on and findings (from the one registry
//! in `mailscope-proto`) that say what is wrong and how to fix it. A PermError is a result,
//! not an `Err`: errors here are only "could not run the check at all".

pub mod bimi;
pub mod dane;
pub mod dkim;
pub mod dmarc;
pub mod dns;
pub mod dnsbl;
pub mod mtasts;
pub mod mx;
pub mod spf;
pub mod tlsrpt;
