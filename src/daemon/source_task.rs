//! What mailbox and calendar tasks share: what a failed sync leads to, and waiting between
//! syncs without holding up a shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::sources::{Backoff, SourceError};
use crate::store::{HealthState, Store};

/// After a failed sync of source `id` (`what` is `mailbox` or `calendar`): refused credentials
/// stop the task until an operator fixes them (recorded as `auth_failed`; a reload starts it
/// again); anything else is recorded as `retrying` and tried again after the next backoff
/// delay, which is returned.
pub(super) async fn after_failure(
    store: &Store,
    what: &str,
    id: &str,
    kind: &str,
    e: &SourceError,
    backoff: &mut Backoff,
) -> Option<Duration> {
    match e {
        SourceError::Auth(msg) => {
            error!(
                source = %id,
                "{what} stopped: authentication failed; fix the config or the secret, then `systemctl reload rapport`: {msg}"
            );
            store.record_health(id, kind, HealthState::AuthFailed, Some(msg)).await;
            None
        }
        e => {
            let delay = backoff.next_delay();
            warn!(source = %id, retry_in = ?delay, "{what} sync failed: {e:#}");
            store
                .record_health(id, kind, HealthState::Retrying, Some(&format!("{e:#}")))
                .await;
            Some(delay)
        }
    }
}

/// Waits `delay`; `false` when `cancel` fired first.
pub(super) async fn pause(cancel: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
