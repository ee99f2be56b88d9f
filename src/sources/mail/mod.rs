//! Mail sources: IMAP and Maildir. Each reads messages (headers, and the body only for the
//! rare bounce), and hands them to [`ingest`] in batches with the cursor that covers them.

pub mod fetch;
mod framing;
pub mod headers;
pub mod imap;
pub mod ingest;
pub mod maildir;
pub mod verify;

pub use headers::MailHeaders;
pub use ingest::{FetchedMail, IngestStats, IngestTx, Ingestor, MatchRules, NewLeads, SentBefore};
