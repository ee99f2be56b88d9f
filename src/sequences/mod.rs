//! Nurture sequences: managers write them in YAML (`config/sequences/*.yaml`); Rapport plans
//! each step in the lead's sending window, renders it, sends it once through the rep's SMTP
//! server and logs it as an activity; replies, bounces, unsubscribes and booked meetings stop
//! it, auto-replies pause it.
//!
//! | module | what it does |
//! |---|---|
//! | [`definition`] | Sequence files, validated with file:line:column errors. |
//! | [`template`] | Strict minijinja templates: checked at load, rendered per lead. |
//! | [`schedule`] | Pure timing: waits, windows, holidays, DST, jitter. |
//! | [`return_date`] | The return date an auto-reply states. |
//! | [`engine`] | Enrolling, claiming due steps, exit rules, the outbox state machine. |
//! | [`smtp`] | The lettre transport per mailbox and the classification of SMTP outcomes. |
//! | [`sender`] | The supervised task per sending mailbox; crash reconciliation over IMAP. |
//! | [`commands`] | `rapport enroll`, `unenroll`, `sequences list/status/preview/upcoming`. |
//! | [`unsubscribe`] | Tokens, the one-click/GET router and mailto unsubscribes. |

pub mod commands;
pub mod definition;
pub mod engine;
pub mod return_date;
pub mod schedule;
pub mod sender;
pub mod smtp;
pub mod template;
pub mod unsubscribe;

pub use definition::{Sequence, Step, WaitSpec, Window, load_dir};
