//! What meeting capture needs from the store: the occurrences each calendar saw at its last
//! sync, and the ETag of each calendar object. Written in the same transaction as the
//! activities and the calendar's sync cursor.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{Store, Tx, with_pool, with_tx};

/// One row of `calendar_events`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredMeeting {
    pub calendar_id: String,
    pub uid: String,
    pub instance: String,
    pub resource: String,
    pub rep_id: String,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub cancelled: bool,
    pub declined: bool,
    /// JSON list of lead ids.
    pub lead_ids: String,
    pub held: bool,
}

impl StoredMeeting {
    pub fn leads(&self) -> Vec<i64> {
        serde_json::from_str(&self.lead_ids).unwrap_or_default()
    }
}

impl Store {
    /// Every occurrence `calendar_id` holds.
    pub async fn calendar_meetings(&self, calendar_id: &str) -> Result<Vec<StoredMeeting>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, StoredMeeting>(
                "SELECT calendar_id, uid, instance, resource, rep_id, start_at, end_at, cancelled, declined,
                        lead_ids, held
                 FROM calendar_events WHERE calendar_id = $1 ORDER BY uid, instance",
            )
            .bind(calendar_id)
            .fetch_all(pool)
            .await
        })
        .with_context(|| format!("reading the meetings of calendar {calendar_id}"))
    }

    /// The ETag of each object of `calendar_id` as last read.
    pub async fn calendar_etags(&self, calendar_id: &str) -> Result<HashMap<String, Option<String>>> {
        let rows: Vec<(String, Option<String>)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT href, etag FROM calendar_resources WHERE calendar_id = $1")
                .bind(calendar_id)
                .fetch_all(pool)
                .await
        })
        .with_context(|| format!("reading the object ETags of calendar {calendar_id}"))?;
        Ok(rows.into_iter().collect())
    }
}

impl Tx {
    /// Inserts or replaces occurrences (by calendar, UID and instance).
    pub async fn put_meetings(&mut self, rows: &[StoredMeeting], now: DateTime<Utc>) -> Result<()> {
        for chunk in rows.chunks(200) {
            with_tx!(self, |conn| {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO calendar_events (calendar_id, uid, instance, resource, rep_id, start_at, end_at,
                        cancelled, declined, lead_ids, held, updated_at) ",
                );
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(&r.calendar_id)
                        .push_bind(&r.uid)
                        .push_bind(&r.instance)
                        .push_bind(&r.resource)
                        .push_bind(&r.rep_id)
                        .push_bind(r.start_at)
                        .push_bind(r.end_at)
                        .push_bind(r.cancelled)
                        .push_bind(r.declined)
                        .push_bind(&r.lead_ids)
                        .push_bind(r.held)
                        .push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (calendar_id, uid, instance) DO UPDATE SET resource = excluded.resource,
                        rep_id = excluded.rep_id, start_at = excluded.start_at, end_at = excluded.end_at,
                        cancelled = excluded.cancelled, declined = excluded.declined, lead_ids = excluded.lead_ids,
                        held = excluded.held, updated_at = excluded.updated_at",
                );
                qb.build().execute(&mut *conn).await.map(|_| ())
            })
            .context("recording meetings")?;
        }
        Ok(())
    }

    /// Records the ETags of calendar objects just read.
    pub async fn put_calendar_etags(
        &mut self,
        calendar_id: &str,
        etags: &[(String, Option<String>)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for chunk in etags.chunks(300) {
            with_tx!(self, |conn| {
                let mut qb = QueryBuilder::new("INSERT INTO calendar_resources (calendar_id, href, etag, updated_at) ");
                qb.push_values(chunk, |mut b, (href, etag)| {
                    b.push_bind(calendar_id).push_bind(href).push_bind(etag).push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (calendar_id, href) DO UPDATE SET etag = excluded.etag, updated_at = excluded.updated_at",
                );
                qb.build().execute(&mut *conn).await.map(|_| ())
            })
            .context("recording calendar object ETags")?;
        }
        Ok(())
    }

    /// Forgets calendar objects deleted on the server.
    pub async fn delete_calendar_resources(&mut self, calendar_id: &str, hrefs: &[String]) -> Result<()> {
        for href in hrefs {
            with_tx!(self, |conn| {
                sqlx::query("DELETE FROM calendar_resources WHERE calendar_id = $1 AND href = $2")
                    .bind(calendar_id)
                    .bind(href)
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
            })
            .context("forgetting a deleted calendar object")?;
        }
        Ok(())
    }
}
