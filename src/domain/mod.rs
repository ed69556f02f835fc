//! The pure domain: no I/O, no transport. Everything a decision is made of.
pub mod experiment;
pub mod features;
pub mod logistic;
pub mod model;
pub mod pacing;
pub mod policy;
pub mod session;
pub mod voucher;
