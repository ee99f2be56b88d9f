//! Turns observations (messages, meetings) into activities: who the rep is, which way the
//! message went, which leads it concerns. Pure functions, no I/O: the store and the sources
//! hand it data, it hands back decisions.

pub mod auto_reply;
pub mod domains;
pub mod index;
pub mod mail;
pub mod meeting;

pub use domains::{DomainClass, DomainRules};
pub use index::LeadIndex;
pub use mail::{LeadMatch, MailDecision, MailMatcher, RepView, SkipReason};
