//! Turns observations (messages, meetings) into activities: who the rep is, which way the
//! message went, which leads it concerns. Pure functions, no I/O.

pub mod domains;

pub use domains::{DomainClass, DomainRules};
