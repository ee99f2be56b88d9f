//! One task per mailbox: sync, wait for news (IDLE) or the poll interval, repeat; back off on
//! transient errors; stop for good on an authentication failure.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Supervised;
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

    async fn report(&self, state: HealthState, error: Option<&str>) {
        if let Err(e) = self
            .ingestor
            .store
            .set_health(&self.config.id, self.kind(), state, error)
            .await
        {
            warn!(mailbox = %self.config.id, "cannot record health: {e:#}");
        }
    }

    /// Runs until `cancel` fires or authentication fails.
    pub async fn run(self, cancel: CancellationToken) {
        self.serve(cancel).await
    }

    async fn serve(&self, cancel: CancellationToken) {
        let id = self.config.id.clone();
        self.report(HealthState::Starting, None).await;
        let mut backoff = Backoff::default();
        loop {
            let started = std::time::Instant::now();
            if cancel.is_cancelled() {
                break;
            }
            // The source stops by itself when `cancel` fires, after storing the batch in hand
            // and its cursor; the supervisor aborts it if that takes longer than the deadline.
            let result = self.watch(&cancel).await;
            let delay = match result {
                Ok(()) => break,
                Err(SourceError::Auth(msg)) => {
                    error!(mailbox = %id, "authentication failed, mailbox stopped until the config or password is fixed: {msg}");
                    self.report(HealthState::AuthFailed, Some(&msg)).await;
                    return;
                }
                Err(e) => {
                    // A connection that stayed up a while was healthy: start backing off afresh.
                    if started.elapsed() > std::time::Duration::from_secs(60) {
                        backoff.reset();
                    }
                    let d = backoff.next_delay();
                    warn!(mailbox = %id, retry_in = ?d, "sync failed: {e:#}");
                    self.report(HealthState::Retrying, Some(&format!("{e:#}"))).await;
                    d
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
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
