//! What mail capture needs from the store: the lead index, which messages were seen, which
//! Message-IDs were sent by a rep, and the bookkeeping of one ingested batch.

use std::collections::HashSet;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{ROWS_PER_INSERT, Store, Tx, with_pool, with_tx};
use crate::matcher::LeadIndex;

/// One row of `mail_seen`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SeenMail {
    pub mailbox_id: String,
    pub folder: String,
    pub item_key: String,
    pub message_id: String,
    pub rep_id: String,
    pub decision: String,
    pub reason: String,
    pub occurred_at: Option<DateTime<Utc>>,
    /// The header fields read, where kept (see the migration).
    pub headers: Option<sqlx::types::Json<serde_json::Value>>,
}

/// A `mail_seen` row to write, borrowed from the batch being ingested (the mailbox and rep are
/// the same for the whole batch: see [`Tx::insert_seen`]). `H` is the header fields kept,
/// written as JSON straight from the source's own type (no intermediate JSON value).
#[derive(Debug)]
pub struct NewSeenMail<'a, H> {
    pub folder: &'a str,
    pub item_key: &'a str,
    pub message_id: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub occurred_at: Option<DateTime<Utc>>,
    pub headers: Option<H>,
}

/// The key `mail_seen` is searched by for a Message-ID: its 64-bit FNV-1a hash. Stored in the
/// database, so it must never change.
pub(super) fn message_key(message_id: &str) -> i64 {
    let hash = message_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Rows of `mail_seen` given a key per transaction when filling keys (on PostgreSQL, in one
/// statement).
const KEYS_PER_TX: i64 = 5_000;

impl Store {
    /// Gives every `mail_seen` row recorded before `message_key` existed its key (see the
    /// migration that added it); once all have one, a single lookup in the key's index.
    pub(super) async fn fill_message_keys(&self) -> Result<()> {
        let mut filled = 0usize;
        loop {
            let rows: Vec<(String, String, String, String)> = with_pool!(self, |pool| {
                sqlx::query_as(
                    "SELECT mailbox_id, folder, item_key, message_id FROM mail_seen
                     WHERE message_key IS NULL LIMIT $1",
                )
                .bind(KEYS_PER_TX)
                .fetch_all(pool)
                .await
            })
            .context("finding messages seen without a key")?;
            if rows.is_empty() {
                break;
            }
            let mut tx = self.begin().await?;
            match &mut tx {
                // In-process: one statement per row costs no round trip.
                Tx::Sqlite(conn, _) => {
                    for (mailbox, folder, item, message_id) in &rows {
                        sqlx::query(
                            "UPDATE mail_seen SET message_key = $1
                             WHERE mailbox_id = $2 AND folder = $3 AND item_key = $4",
                        )
                        .bind(message_key(message_id))
                        .bind(mailbox)
                        .bind(folder)
                        .bind(item)
                        .execute(&mut **conn)
                        .await
                        .context("keying a message seen")?;
                    }
                }
                // Over the network: the whole chunk in one statement, one array per column.
                Tx::Postgres(conn) => {
                    let column = |f: fn(&(String, String, String, String)) -> &str| -> Vec<&str> {
                        rows.iter().map(f).collect()
                    };
                    sqlx::query(
                        "UPDATE mail_seen AS m SET message_key = v.key
                         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) AS v(mailbox_id, folder, item_key, key)
                         WHERE m.mailbox_id = v.mailbox_id AND m.folder = v.folder AND m.item_key = v.item_key",
                    )
                    .bind(column(|r| &r.0))
                    .bind(column(|r| &r.1))
                    .bind(column(|r| &r.2))
                    .bind(rows.iter().map(|r| message_key(&r.3)).collect::<Vec<i64>>())
                    .execute(&mut **conn)
                    .await
                    .context("keying messages seen")?;
                }
            }
            tx.commit().await?;
            filled += rows.len();
        }
        if filled > 0 {
            tracing::info!(messages = filled, "keyed the messages seen before this version");
        }
        Ok(())
    }

    /// Every lead address and company domain, for matching.
    pub async fn load_lead_index(&self) -> Result<LeadIndex> {
        with_pool!(self, |pool| async {
            let leads: Vec<(String, i64)> = sqlx::query_as("SELECT email_key, id FROM leads")
                .fetch_all(pool)
                .await?;
            let companies: Vec<(String, i64)> = sqlx::query_as("SELECT domain, id FROM companies")
                .fetch_all(pool)
                .await?;
            Ok::<_, sqlx::Error>(LeadIndex::new(leads, companies))
        }
        .await)
        .context("loading leads for matching")
    }

    /// The item keys already seen in one folder of a mailbox.
    pub async fn seen_keys(&self, mailbox_id: &str, folder: &str) -> Result<HashSet<String>> {
        let keys: Vec<String> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT item_key FROM mail_seen WHERE mailbox_id = $1 AND folder = $2")
                .bind(mailbox_id)
                .bind(folder)
                .fetch_all(pool)
                .await
        })
        .with_context(|| format!("reading the messages seen in {mailbox_id}/{folder}"))?;
        Ok(keys.into_iter().collect())
    }

    /// Every message seen in a mailbox, by folder and key.
    pub async fn seen_in_mailbox(&self, mailbox_id: &str) -> Result<Vec<SeenMail>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, SeenMail>(
                "SELECT mailbox_id, folder, item_key, message_id, rep_id, decision, reason, occurred_at, headers
                 FROM mail_seen WHERE mailbox_id = $1 ORDER BY folder, item_key",
            )
            .bind(mailbox_id)
            .fetch_all(pool)
            .await
        })
        .with_context(|| format!("listing the messages seen in {mailbox_id}"))
    }

    /// Messages of a mailbox whose header fields were kept and that a newly imported lead may
    /// concern: skipped for want of a lead (they may count now), or counted with a participant
    /// that is not one of their leads (the activity may gain a lead).
    pub async fn rematch_candidates(&self, mailbox_id: &str) -> Result<Vec<SeenMail>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, SeenMail>(
                "SELECT mailbox_id, folder, item_key, message_id, rep_id, decision, reason, occurred_at, headers
                 FROM mail_seen WHERE mailbox_id = $1 AND headers IS NOT NULL
                    AND (decision NOT IN ('skipped', 'unreadable') OR reason LIKE 'not counted: no lead%'
                        OR reason LIKE 'not counted: a bounce that names no lead%')
                 ORDER BY occurred_at, item_key",
            )
            .bind(mailbox_id)
            .fetch_all(pool)
            .await
        })
        .with_context(|| format!("listing mail of {mailbox_id} to match again"))
    }

    /// What was decided about a message, in every mailbox and folder it was seen in.
    pub async fn explain_message(&self, message_id: &str) -> Result<Vec<SeenMail>> {
        let id = message_id.trim().trim_start_matches('<').trim_end_matches('>');
        with_pool!(self, |pool| {
            sqlx::query_as::<_, SeenMail>(
                "SELECT mailbox_id, folder, item_key, message_id, rep_id, decision, reason, occurred_at, headers
                 FROM mail_seen WHERE message_key = $1 AND message_id = $2
                 ORDER BY mailbox_id, folder, item_key",
            )
            .bind(message_key(id))
            .bind(id)
            .fetch_all(pool)
            .await
        })
        .context("looking up a message")
    }
}

impl Tx {
    /// Which of `ids` are Message-IDs of outbound mail this rep sent (by hand or by sequence),
    /// as this transaction sees them (a batch of mail is decided inside the transaction that
    /// stores it, and maybe the batches before it).
    pub async fn outbound_message_ids(&mut self, rep_id: &str, ids: &[&str]) -> Result<foldhash::HashSet<String>> {
        let mut found = foldhash::HashSet::default();
        for chunk in ids.chunks(500) {
            let rows: Vec<String> = with_tx!(self, |conn| {
                let mut qb = QueryBuilder::new(
                    // The Message-IDs lead the natural key's index (source_id, rep_id, dedup_kind,
                    // source) and every other column of it is constrained: a few index probes per id,
                    // never a scan of the rep's history. Mail sent by hand has dedup_kind 'message',
                    // mail sent by a sequence 'email_sent'.
                    "SELECT source_id FROM activities WHERE direction = 'outbound'
                     AND dedup_kind IN ('message', 'email_sent') AND source IN ('mail', 'sequence') AND rep_id = ",
                );
                qb.push_bind(rep_id).push(" AND source_id IN (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_scalar::<String>().fetch_all(&mut *conn).await
            })
            .context("looking up outbound messages")?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Records that these messages of `mailbox_id` (owned by `rep_id`) were looked at. A row
    /// already present (the message matched again after a lead import) takes the new decision,
    /// reason and kept header fields if it was skipped (the message may count now) or if the new
    /// decision counts (it may name a lead more, and no longer need its header fields); a
    /// message that counted is never marked skipped again.
    pub async fn insert_seen<H: serde::Serialize + Sync>(
        &mut self,
        mailbox_id: &str,
        rep_id: &str,
        rows: &[NewSeenMail<'_, H>],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let conn = match self {
            Tx::Sqlite(t, _) => return super::sqlite_bulk::insert_seen(t, mailbox_id, rep_id, rows, now).await,
            Tx::Postgres(t) => &mut **t,
        };
        // One array per column (see `activities::insert_returning_keys`).
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            fn column<'a, H, T>(chunk: &'a [NewSeenMail<'_, H>], f: impl Fn(&'a NewSeenMail<'_, H>) -> T) -> Vec<T> {
                chunk.iter().map(f).collect()
            }
            sqlx::query(
                "INSERT INTO mail_seen (folder, item_key, message_id, decision, reason, occurred_at, headers,
                    message_key, mailbox_id, rep_id, seen_at)
                 SELECT v.*, $9, $10, $11 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                    $5::text[], $6::timestamptz[], $7::jsonb[], $8::int8[]) AS v
                 ON CONFLICT (mailbox_id, folder, item_key) DO UPDATE SET decision = excluded.decision,
                    reason = excluded.reason, headers = excluded.headers
                 WHERE mail_seen.decision = 'skipped' OR excluded.decision NOT IN ('skipped', 'unreadable')",
            )
            .bind(column(chunk, |r| r.folder))
            .bind(column(chunk, |r| r.item_key))
            .bind(column(chunk, |r| r.message_id))
            .bind(column(chunk, |r| r.decision))
            .bind(column(chunk, |r| r.reason))
            .bind(column(chunk, |r| r.occurred_at))
            .bind(column(chunk, |r| r.headers.as_ref().map(sqlx::types::Json)))
            .bind(column(chunk, |r| message_key(r.message_id)))
            .bind(mailbox_id)
            .bind(rep_id)
            .bind(now)
            .execute(&mut *conn)
            .await
            .context("recording seen messages")?;
        }
        Ok(())
    }

    /// The id of the lead with `address`, creating it (and its company, for a company domain)
    /// when it does not exist yet.
    pub async fn ensure_lead(
        &mut self,
        address: &str,
        company_domain: Option<&str>,
        owner_rep: &str,
        origin: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        with_tx!(self, |conn| async {
            let company_id: Option<i64> = match company_domain {
                Some(domain) => {
                    sqlx::query(
                        "INSERT INTO companies (domain, name, created_at) VALUES ($1, NULL, $2)
                         ON CONFLICT (domain) DO NOTHING",
                    )
                    .bind(domain)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query_scalar("SELECT id FROM companies WHERE domain = $1")
                        .bind(domain)
                        .fetch_optional(&mut *conn)
                        .await?
                }
                None => None,
            };
            sqlx::query(
                "INSERT INTO leads (email, email_key, company_id, owner_rep, status, attributes, origin, created_at, updated_at)
                 VALUES ($1, $1, $2, $3, 'new', '{}', $4, $5, $5)
                 ON CONFLICT (email_key) DO NOTHING",
            )
            .bind(address)
            .bind(company_id)
            .bind(owner_rep)
            .bind(origin)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query_scalar::<_, i64>("SELECT id FROM leads WHERE email_key = $1")
                .bind(address)
                .fetch_one(&mut *conn)
                .await
        }
        .await)
        .with_context(|| format!("creating lead {address}"))
    }

    /// Marks leads' addresses as bounced and suppresses them for sequences.
    pub async fn mark_bounced(&mut self, addresses: &[String], now: DateTime<Utc>) -> Result<()> {
        for a in addresses {
            with_tx!(self, |conn| async {
                sqlx::query(
                    "UPDATE leads SET bounced_at = COALESCE(bounced_at, $1), updated_at = $1 WHERE email_key = $2",
                )
                .bind(now)
                .bind(a)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "INSERT INTO suppressions (entry, reason, created_at) VALUES ($1, 'bounced', $2)
                     ON CONFLICT (entry) DO NOTHING",
                )
                .bind(a)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map(|_| ())
            }
            .await)
            .with_context(|| format!("marking {a} as bounced"))?;
        }
        Ok(())
    }
}
