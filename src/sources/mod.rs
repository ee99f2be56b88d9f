//! Where observations come from: mailboxes (IMAP, Maildir) and, later, calendars. A source
//! only reads and parses; deciding what counts is the matcher's job.

pub mod error;
pub mod mail;
pub mod manual;

pub use error::{Backoff, SourceError};
