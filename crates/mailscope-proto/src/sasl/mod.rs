//! SASL mechanisms (being written).
