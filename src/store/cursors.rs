//! Per-source sync positions. A cursor is written in the same transaction as the activities
//! it covers, so a crash can never skip or double-count what lies between them.

use anyhow::{Context, Result};

use super::{Store, Tx, with_pool, with_tx};

/// Where a source's scope (an IMAP folder, a calendar collection) was last synced to.
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct SyncCursor {
    pub source_id: String,
    pub scope: String,
    /// IMAP UIDVALIDITY: when it changes, UIDs mean something else and the folder is resynced.
    pub validity: Option<i64>,
    pub last_uid: Option<i64>,
    pub highest_modseq: Option<i64>,
    /// Opaque position for sources that have one (calendar sync tokens, ETags, Maildir state).
    pub token: Option<String>,
}

impl Store {
    pub async fn cursor(&self, source_id: &str, scope: &str) -> Result<Option<SyncCursor>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, SyncCursor>(
                "SELECT source_id, scope, validity, last_uid, highest_modseq, token
                 FROM sync_cursors WHERE source_id = $1 AND scope = $2",
            )
            .bind(source_id)
            .bind(scope)
            .fetch_optional(pool)
            .await
        })
        .with_context(|| format!("reading the sync cursor of {source_id}/{scope}"))
    }

    pub async fn cursors_of(&self, source_id: &str) -> Result<Vec<SyncCursor>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, SyncCursor>(
                "SELECT source_id, scope, validity, last_uid, highest_modseq, token
                 FROM sync_cursors WHERE source_id = $1 ORDER BY scope",
            )
            .bind(source_id)
            .fetch_all(pool)
            .await
        })
        .with_context(|| format!("reading the sync cursors of {source_id}"))
    }
}

impl Tx {
    pub async fn put_cursor(&mut self, c: &SyncCursor, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
        with_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO sync_cursors (source_id, scope, validity, last_uid, highest_modseq, token, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (source_id, scope) DO UPDATE SET validity = excluded.validity,
                    last_uid = excluded.last_uid, highest_modseq = excluded.highest_modseq,
                    token = excluded.token, updated_at = excluded.updated_at",
            )
            .bind(&c.source_id)
            .bind(&c.scope)
            .bind(c.validity)
            .bind(c.last_uid)
            .bind(c.highest_modseq)
            .bind(&c.token)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map(|_| ())
        })
        .with_context(|| format!("writing the sync cursor of {}/{}", c.source_id, c.scope))?;
        Ok(())
    }
}
