//! mailscope-net (being written).
