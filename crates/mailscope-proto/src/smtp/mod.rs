//! SMTP codec and machines (being written).
