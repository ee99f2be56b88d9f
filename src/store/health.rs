//! The health of each mailbox and calendar task, as shown by `rapport status`.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::{Store, with_pool};

/// The state a source task last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Starting,
    Ok,
    /// A transient failure; the task is backing off and will retry.
    Retrying,
    /// Login refused: the task stopped and needs an operator.
    AuthFailed,
    /// A permanent failure other than login.
    Failed,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Starting => "starting",
            HealthState::Ok => "ok",
            HealthState::Retrying => "retrying",
            HealthState::AuthFailed => "auth_failed",
            HealthState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SourceHealth {
    pub source_id: String,
    pub kind: String,
    pub state: String,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Records a completed sync of a source as healthy. A failure to write that is logged, not
    /// returned: the sync itself succeeded and its data is stored.
    pub async fn record_healthy(&self, source_id: &str, kind: &str) {
        self.record_health(source_id, kind, HealthState::Ok, None).await;
    }

    /// [`Store::set_health`] for source tasks, which go on whatever happens: a failure to write
    /// is logged.
    pub async fn record_health(&self, source_id: &str, kind: &str, state: HealthState, error: Option<&str>) {
        if let Err(e) = self.set_health(source_id, kind, state, error).await {
            tracing::warn!(source = %source_id, "cannot record health: {e:#}");
        }
    }

    /// Records a source's state; `error` is `None` on success.
    pub async fn set_health(&self, source_id: &str, kind: &str, state: HealthState, error: Option<&str>) -> Result<()> {
        let now = self.now();
        let ok = state == HealthState::Ok;
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO source_health (source_id, kind, state, last_success_at, last_error, last_error_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (source_id) DO UPDATE SET kind = excluded.kind, state = excluded.state,
                    last_success_at = COALESCE(excluded.last_success_at, source_health.last_success_at),
                    last_error = COALESCE(excluded.last_error, source_health.last_error),
                    last_error_at = COALESCE(excluded.last_error_at, source_health.last_error_at),
                    updated_at = excluded.updated_at",
            )
            .bind(source_id)
            .bind(kind)
            .bind(state.as_str())
            .bind(ok.then_some(now))
            .bind(error)
            .bind(error.map(|_| now))
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .with_context(|| format!("recording the health of {source_id}"))?;
        Ok(())
    }

    pub async fn health(&self) -> Result<Vec<SourceHealth>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, SourceHealth>(
                "SELECT source_id, kind, state, last_success_at, last_error, last_error_at
                 FROM source_health ORDER BY source_id",
            )
            .fetch_all(pool)
            .await
        })
        .context("reading source health")
    }
}
