//! One task per mailbox: sync, wait for news (IDLE) or the poll interval, repeat; back off on
//! transient errors; stop for good on an authentication failure.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Supervised;
use super::source_task::{after_failure, pause};
use crate::config::{MailboxConfig, MailboxSource};
use crate::sources::mail::{IngestStats, Ingestor, imap, maildir};
use crate::sources::{Backoff, SourceError};
use crate::store::HealthState;

/// A mailbox and the ingestor that stores what it finds.
pub struct MailboxTask {
    pub config: MailboxConfig,
    pub ingestor: Arc<Ingestor>,
}

impl MailboxTask {
    pub fn kind(&self) -> &'static str {
        match self.config.source {
            MailboxSource::Imap(_) => "imap",
            MailboxSource::Maildir(_) => "maildir",
        }
    }

    /// One complete pass over every folder.
    pub async fn sync_once(&self) -> Result<IngestStats, SourceError> {
        match &self.config.source {
            MailboxSource::Maildir(m) => Ok(maildir::sync_once(&m.path, &self.ingestor).await?),
            MailboxSource::Imap(imap) => imap::sync_once(imap, &self.ingestor).await,
        }
    }

    /// Runs until `cancel` fires or authentication fails.
    pub async fn run(self, cancel: CancellationToken) {
        self.serve(cancel).await
    }

    async fn serve(&self, cancel: CancellationToken) {
        let id = self.config.id.clone();
        self.ingestor
            .store
            .record_health(&id, self.kind(), HealthState::Starting, None)
            .await;
        let mut backoff = Backoff::default();
        loop {
            let started = std::time::Instant::now();
            if cancel.is_cancelled() {
                break;
            }
            // The source stops by itself when `cancel` fires, after storing the mail already
            // read with its cursor; the supervisor aborts it if that takes longer than the deadline.
            let result = self.watch(&cancel).await;
            let e = match result {
                Ok(()) => break,
                Err(e) => e,
            };
            // A connection that stayed up a while was healthy: start backing off afresh.
            if started.elapsed() > std::time::Duration::from_secs(60) {
                backoff.reset();
            }
            let store = &self.ingestor.store;
            let Some(delay) = after_failure(store, "mailbox", &id, self.kind(), &e, &mut backoff).await else {
                return;
            };
            if !pause(&cancel, delay).await {
                break;
            }
        }
        info!(mailbox = %id, "mailbox task stopped");
    }

    /// Syncs, then keeps syncing whenever news may have arrived. Returns `Ok` when `cancel`
    /// fires, an error otherwise.
    async fn watch(&self, cancel: &CancellationToken) -> Result<(), SourceError> {
        match &self.config.source {
            MailboxSource::Maildir(m) => loop {
                // A Maildir batch is local work: cancelling drops it unstored (its transaction
                // rolls back) and the next start reads it again.
                let stats = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    r = maildir::sync_once(&m.path, &self.ingestor) => r?,
                };
                self.ingestor.synced("maildir", &stats).await;
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(m.poll_interval) => {}
                }
            },
            MailboxSource::Imap(imap) => imap::watch(imap, &self.ingestor, cancel).await,
        }
    }
}

impl Supervised for MailboxTask {
    fn name(&self) -> String {
        format!("mailbox {}", self.config.id)
    }

    fn run(self: Arc<Self>, cancel: CancellationToken) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.serve(cancel).await })
    }
}
