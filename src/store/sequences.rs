//! Enrollments, the outbox and the suppression list: the state of every sequence lives here,
//! not in memory, so a restart loses nothing and two daemons never send the same step.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::leads::lead_select;
use super::{Backend, Lead, Store, with_pool, with_tx};
use crate::activity::NewActivity;

/// One enrollment as a sender sees it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Enrollment {
    pub id: i64,
    pub sequence_id: String,
    pub sequence_version: String,
    pub lead_id: i64,
    pub rep_id: String,
    pub mailbox_id: Option<String>,
    pub state: String,
    pub next_step: i32,
    pub next_due_at: Option<DateTime<Utc>>,
    pub stop_reason: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub last_step_at: Option<DateTime<Utc>>,
    pub auto_reply_seen_at: Option<DateTime<Utc>>,
}

const ENROLLMENT_COLUMNS: &str = "id, sequence_id, sequence_version, lead_id, rep_id, mailbox_id, state, next_step,
    next_due_at, stop_reason, enrolled_at, last_step_at, auto_reply_seen_at";

/// An activity that matters to exit rules.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LeadEvent {
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub subject: Option<String>,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub enrollment_id: i64,
    pub step_index: i32,
    pub mailbox_id: String,
    pub message_id: String,
    pub recipient: String,
    pub subject: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub raw: String,
    pub sender: String,
    pub attempted_at: Option<DateTime<Utc>>,
}

const OUTBOX_COLUMNS: &str =
    "id, enrollment_id, step_index, mailbox_id, message_id, recipient, subject, state, attempts,
    next_attempt_at, last_error, sent_at, raw, sender, attempted_at";

/// A new outbox row, written before the SMTP transaction starts.
#[derive(Debug, Clone)]
pub struct NewOutbox<'a> {
    pub enrollment_id: i64,
    pub step_index: i32,
    pub mailbox_id: &'a str,
    pub message_id: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub raw: &'a str,
    pub sender: &'a str,
}

/// Result of an enroll attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollOutcome {
    Enrolled(i64),
    /// The lead is already in this sequence (active or paused).
    AlreadyEnrolled,
}

/// Counts for a mailbox's cap and gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendStats {
    /// Messages attempted since the start of the day given.
    pub today: i64,
    /// The latest attempt of this mailbox.
    pub last_attempt: Option<DateTime<Utc>>,
}

impl Store {
    /// Keeps the text of a sequence version so enrollments pinned to it survive edits.
    pub async fn save_sequence_version(&self, sequence_id: &str, version: &str, source: &str) -> Result<()> {
        let now = self.now();
        with_pool!(self, |pool| sqlx::query(
            "INSERT INTO sequence_versions (sequence_id, version, source, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (sequence_id, version) DO NOTHING"
        )
        .bind(sequence_id)
        .bind(version)
        .bind(source)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("saving a sequence version")
    }

    pub async fn sequence_version_source(&self, sequence_id: &str, version: &str) -> Result<Option<String>> {
        with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT source FROM sequence_versions WHERE sequence_id = $1 AND version = $2"
        )
        .bind(sequence_id)
        .bind(version)
        .fetch_optional(pool)
        .await)
        .context("loading a sequence version")
    }

    /// Enrolls a lead unless it is already active or paused in the same sequence.
    pub async fn enroll(
        &self,
        sequence_id: &str,
        version: &str,
        lead_id: i64,
        rep_id: &str,
        mailbox_id: &str,
        due: DateTime<Utc>,
    ) -> Result<EnrollOutcome> {
        let now = self.now();
        let id: Option<i64> = with_pool!(self, |pool| sqlx::query_scalar(
            "INSERT INTO enrollments (sequence_id, sequence_version, lead_id, rep_id, mailbox_id, state, next_step,
                next_due_at, enrolled_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'active', 0, $6, $7, $7)
             ON CONFLICT (sequence_id, lead_id) WHERE state IN ('active', 'paused') DO NOTHING
             RETURNING id"
        )
        .bind(sequence_id)
        .bind(version)
        .bind(lead_id)
        .bind(rep_id)
        .bind(mailbox_id)
        .bind(due)
        .bind(now)
        .fetch_optional(pool)
        .await)
        .context("enrolling a lead")?;
        Ok(id.map_or(EnrollOutcome::AlreadyEnrolled, EnrollOutcome::Enrolled))
    }

    /// Stops a lead's live enrollments (in one sequence, or all); returns how many.
    pub async fn unenroll(&self, lead_id: i64, sequence_id: Option<&str>, reason: &str) -> Result<u64> {
        let now = self.now();
        with_pool!(self, |pool| sqlx::query(
            "UPDATE enrollments SET state = 'stopped', stop_reason = $1, next_due_at = NULL, lease_until = NULL, updated_at = $2
             WHERE lead_id = $3 AND state IN ('active', 'paused') AND ($4 IS NULL OR sequence_id = $4)"
        )
        .bind(reason)
        .bind(now)
        .bind(lead_id)
        .bind(sequence_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .context("unenrolling")
    }

    /// Leases the enrollment of `mailbox_id` that is due longest, if any: PostgreSQL skips rows
    /// another daemon holds (`FOR UPDATE SKIP LOCKED`), SQLite serialises writers (`BEGIN
    /// IMMEDIATE`). A paused enrollment whose pause is over becomes active again.
    pub async fn claim_due(
        &self,
        mailbox_id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Enrollment>> {
        let sql_sqlite = "UPDATE enrollments SET lease_until = $1, state = 'active', updated_at = $3
             WHERE id = (SELECT id FROM enrollments
                 WHERE mailbox_id = $2 AND state IN ('active', 'paused') AND next_due_at <= $3
                   AND (lease_until IS NULL OR lease_until < $3)
                 ORDER BY next_due_at, id LIMIT 1)
             RETURNING id, sequence_id, sequence_version, lead_id, rep_id, mailbox_id, state, next_step,
                next_due_at, stop_reason, enrolled_at, last_step_at, auto_reply_seen_at";
        let sql_pg = "UPDATE enrollments SET lease_until = $1, state = 'active', updated_at = $3
             WHERE id = (SELECT id FROM enrollments
                 WHERE mailbox_id = $2 AND state IN ('active', 'paused') AND next_due_at <= $3
                   AND (lease_until IS NULL OR lease_until < $3)
                 ORDER BY next_due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING id, sequence_id, sequence_version, lead_id, rep_id, mailbox_id, state, next_step,
                next_due_at, stop_reason, enrolled_at, last_step_at, auto_reply_seen_at";
        let mut tx = self.begin().await?;
        let sql = match tx.backend() {
            Backend::Sqlite => sql_sqlite,
            Backend::Postgres => sql_pg,
        };
        let row: Option<Enrollment> = with_tx!(&mut tx, |conn| sqlx::query_as(sql)
            .bind(lease_until)
            .bind(mailbox_id)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await)
        .context("claiming a due step")?;
        tx.commit().await?;
        Ok(row)
    }

    /// The earliest time an enrollment of `mailbox_id` is due (leases ignored), for sleeping.
    pub async fn next_due(&self, mailbox_id: &str) -> Result<Option<DateTime<Utc>>> {
        with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT MIN(next_due_at) FROM enrollments WHERE mailbox_id = $1 AND state IN ('active', 'paused')"
        )
        .bind(mailbox_id)
        .fetch_one(pool)
        .await)
        .context("finding the next due step")
    }

    /// Moves an enrollment on: next step, due time, state; releases the lease. (Every column a
    /// step changes, written in one statement: hence the argument list.)
    #[allow(clippy::too_many_arguments)]
    pub async fn update_enrollment(
        &self,
        id: i64,
        state: &str,
        next_step: i32,
        next_due_at: Option<DateTime<Utc>>,
        stop_reason: Option<&str>,
        last_step_at: Option<DateTime<Utc>>,
        auto_reply_seen_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let now = self.now();
        with_pool!(self, |pool| sqlx::query(
            "UPDATE enrollments SET state = $1, next_step = $2, next_due_at = $3, stop_reason = $4,
                last_step_at = $5, auto_reply_seen_at = $6, lease_until = NULL, updated_at = $7
             WHERE id = $8"
        )
        .bind(state)
        .bind(next_step)
        .bind(next_due_at)
        .bind(stop_reason)
        .bind(last_step_at)
        .bind(auto_reply_seen_at)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("updating an enrollment")
    }

    pub async fn enrollment(&self, id: i64) -> Result<Option<Enrollment>> {
        let sql = format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = $1");
        with_pool!(self, |pool| sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)
            .context("reading an enrollment")
    }

    /// Enrollments, optionally of one sequence or lead, newest first.
    pub async fn enrollments(&self, sequence_id: Option<&str>, lead_id: Option<i64>) -> Result<Vec<Enrollment>> {
        let sql = format!(
            "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE ($1 IS NULL OR sequence_id = $1)
             AND ($2 IS NULL OR lead_id = $2) ORDER BY id DESC"
        );
        with_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(sequence_id)
            .bind(lead_id)
            .fetch_all(pool)
            .await)
        .context("listing enrollments")
    }

    /// Enrollment counts per sequence and state.
    pub async fn enrollment_counts(&self) -> Result<Vec<(String, String, i64)>> {
        with_pool!(self, |pool| sqlx::query_as(
            "SELECT sequence_id, state, COUNT(*) FROM enrollments GROUP BY sequence_id, state ORDER BY sequence_id, state"
        )
        .fetch_all(pool)
        .await)
        .context("counting enrollments")
    }

    /// Live enrollments due before `until`, for `rapport sequences upcoming`.
    pub async fn due_before(&self, until: DateTime<Utc>) -> Result<Vec<Enrollment>> {
        let sql = format!(
            "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE state IN ('active', 'paused') AND next_due_at < $1
             ORDER BY next_due_at, id"
        );
        with_pool!(self, |pool| sqlx::query_as(&sql).bind(until).fetch_all(pool).await)
            .context("listing upcoming steps")
    }

    pub async fn lead_for_sending(&self, lead_id: i64) -> Result<Option<Lead>> {
        with_pool!(self, |pool| sqlx::query_as(lead_select!("WHERE l.id = $1"))
            .bind(lead_id)
            .fetch_optional(pool)
            .await)
        .context("reading a lead")
    }

    /// Leads that are in no enrollment of `sequence_id` yet (for enroll rules).
    pub async fn leads_never_enrolled(&self, sequence_id: &str) -> Result<Vec<Lead>> {
        with_pool!(self, |pool| sqlx::query_as(lead_select!(
            "WHERE NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.lead_id = l.id AND e.sequence_id = $1)
             ORDER BY l.id"
        ))
        .bind(sequence_id)
        .fetch_all(pool)
        .await)
        .context("reading leads for enroll rules")
    }

    /// Replies, booked meetings, bounces and auto-replies linked to a lead since `since`.
    pub async fn lead_events_since(&self, lead_id: i64, since: DateTime<Utc>) -> Result<Vec<LeadEvent>> {
        with_pool!(self, |pool| sqlx::query_as(
            "SELECT a.kind, a.occurred_at, a.subject FROM activities a JOIN activity_leads al ON al.activity_id = a.id
             WHERE al.lead_id = $1 AND a.occurred_at >= $2
               AND a.kind IN ('reply_received', 'meeting_booked', 'bounce', 'auto_reply')
             ORDER BY a.occurred_at, a.id"
        )
        .bind(lead_id)
        .bind(since)
        .fetch_all(pool)
        .await)
        .context("reading a lead's activities")
    }

    /// Why `address` may not be mailed (its own entry, else its domain's `@domain` entry).
    pub async fn suppression_of(&self, address: &str) -> Result<Option<String>> {
        let address = address.to_lowercase();
        let domain = format!("@{}", crate::address::domain_of(&address));
        with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT reason FROM suppressions WHERE entry = $1 OR entry = $2 ORDER BY entry LIMIT 1"
        )
        .bind(&address)
        .bind(&domain)
        .fetch_optional(pool)
        .await)
        .context("checking the suppression list")
    }

    /// Adds an address (`sara@acme.example`) or a domain (`@acme.example`) to the suppression
    /// list. `reason`: bounced, unsubscribed, manual.
    pub async fn suppress(&self, entry: &str, reason: &str) -> Result<()> {
        let now = self.now();
        let entry = entry.trim().to_lowercase();
        with_pool!(self, |pool| sqlx::query(
            "INSERT INTO suppressions (entry, reason, created_at) VALUES ($1, $2, $3) ON CONFLICT (entry) DO NOTHING"
        )
        .bind(&entry)
        .bind(reason)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("adding to the suppression list")
    }

    /// Marks a lead unsubscribed, suppresses its address and stops its enrollments.
    pub async fn unsubscribe_lead(&self, lead_id: i64) -> Result<()> {
        let now = self.now();
        let Some(lead) = self.lead_for_sending(lead_id).await? else {
            return Ok(());
        };
        with_pool!(self, |pool| sqlx::query(
            "UPDATE leads SET unsubscribed_at = COALESCE(unsubscribed_at, $1), updated_at = $1 WHERE id = $2"
        )
        .bind(now)
        .bind(lead_id)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("marking a lead unsubscribed")?;
        self.suppress(&lead.email, "unsubscribed").await?;
        self.unenroll(lead_id, None, "unsubscribed").await?;
        Ok(())
    }

    /// Marks a lead's address bounced (lead and suppression list).
    pub async fn mark_lead_bounced(&self, address: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.begin().await?;
        tx.mark_bounced(&[address.to_lowercase()], now).await?;
        tx.commit().await
    }

    /// Writes the outbox row (with its Message-ID) before the SMTP transaction. Returns the
    /// row of this step, new or already there.
    pub async fn plan_outbox(&self, o: &NewOutbox<'_>) -> Result<OutboxRow> {
        let now = self.now();
        with_pool!(self, |pool| sqlx::query(
            "INSERT INTO outbox (enrollment_id, step_index, mailbox_id, message_id, recipient, subject, state, raw, sender, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'planned', $7, $8, $9)
             ON CONFLICT (enrollment_id, step_index) DO NOTHING"
        )
        .bind(o.enrollment_id)
        .bind(o.step_index)
        .bind(o.mailbox_id)
        .bind(o.message_id)
        .bind(o.recipient)
        .bind(o.subject)
        .bind(o.raw)
        .bind(o.sender)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("writing the outbox")?;
        self.outbox_for_step(o.enrollment_id, o.step_index)
            .await?
            .context("outbox row vanished")
    }

    pub async fn outbox_for_step(&self, enrollment_id: i64, step_index: i32) -> Result<Option<OutboxRow>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE enrollment_id = $1 AND step_index = $2");
        with_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(enrollment_id)
            .bind(step_index)
            .fetch_optional(pool)
            .await)
        .context("reading the outbox")
    }

    /// The outbox rows of an enrollment, by step.
    pub async fn outbox_of_enrollment(&self, enrollment_id: i64) -> Result<Vec<OutboxRow>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE enrollment_id = $1 ORDER BY step_index");
        with_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(enrollment_id)
            .fetch_all(pool)
            .await)
        .context("reading the outbox")
    }

    /// Rows of a mailbox in one state (e.g. `sending` left by a crash, `unknown` to report).
    pub async fn outbox_in_state(&self, mailbox_id: Option<&str>, state: &str) -> Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE ($1 IS NULL OR mailbox_id = $1) AND state = $2 ORDER BY id"
        );
        with_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(mailbox_id)
            .bind(state)
            .fetch_all(pool)
            .await)
        .context("reading the outbox")
    }

    /// Marks a row as being sent, just before the SMTP transaction.
    pub async fn outbox_sending(&self, id: i64) -> Result<()> {
        let now = self.now();
        with_pool!(self, |pool| sqlx::query(
            "UPDATE outbox SET state = 'sending', attempted_at = $1, attempts = attempts + 1 WHERE id = $2"
        )
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("marking an outbox row as sending")
    }

    /// Sets a row's state (retry, failed, unknown, planned) with an error and next attempt.
    pub async fn outbox_set_state(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        with_pool!(self, |pool| sqlx::query(
            "UPDATE outbox SET state = $1, last_error = $2, next_attempt_at = $3 WHERE id = $4"
        )
        .bind(state)
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))
        .context("updating an outbox row")
    }

    /// Records a sent message: the row becomes `sent` and its `email_sent` activity is logged,
    /// in one transaction (the activity's natural key is the Message-ID, so it is logged once).
    pub async fn outbox_sent(&self, id: i64, sent_at: DateTime<Utc>, activity: &NewActivity) -> Result<()> {
        let mut tx = self.begin().await?;
        with_tx!(&mut tx, |conn| sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = $1, last_error = NULL WHERE id = $2"
        )
        .bind(sent_at)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map(|_| ()))
        .context("marking an outbox row as sent")?;
        tx.record_activity(activity, self.now()).await?;
        tx.commit().await
    }

    /// Attempts since `day_start` and the latest attempt, for a mailbox's cap and gap.
    pub async fn send_stats(&self, mailbox_id: &str, day_start: DateTime<Utc>) -> Result<SendStats> {
        let (today, last_attempt): (i64, Option<DateTime<Utc>>) = with_pool!(self, |pool| sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE attempted_at >= $2), MAX(attempted_at) FROM outbox
             WHERE mailbox_id = $1 AND attempted_at IS NOT NULL AND state IN ('sending', 'sent', 'unknown')"
        )
        .bind(mailbox_id)
        .bind(day_start)
        .fetch_one(pool)
        .await)
        .context("counting a mailbox's sends")?;
        Ok(SendStats { today, last_attempt })
    }

    /// Header records of mail seen at or after `since` (all when `None`), oldest first.
    pub async fn seen_headers_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<(DateTime<Utc>, serde_json::Value)>> {
        let rows: Vec<(DateTime<Utc>, Json<serde_json::Value>)> = with_pool!(self, |pool| sqlx::query_as(
            "SELECT seen_at, headers FROM mail_seen WHERE headers IS NOT NULL AND ($1 IS NULL OR seen_at >= $1)
             ORDER BY seen_at LIMIT 10000"
        )
        .bind(since)
        .fetch_all(pool)
        .await)
        .context("reading seen mail")?;
        Ok(rows.into_iter().map(|(t, h)| (t, h.0)).collect())
    }
}
