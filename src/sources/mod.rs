//! Where observations come from: mailboxes (IMAP, Maildir) and calendars (ICS feeds, CalDAV,
//! Google). A source only reads and parses; deciding what counts is the matcher's job.

pub mod calendar;
pub mod error;
pub mod mail;
pub mod manual;

pub use error::{Backoff, SourceError};
