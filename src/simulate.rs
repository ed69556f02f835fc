//! Policy simulator (being written).
