//! Activities, stored exactly once by their natural key (rep, kind, source, source id).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use foldhash::{HashMap, HashMapExt};
use std::collections::HashSet;

use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::{ROWS_PER_INSERT, Store, Tx, with_pool, with_tx};
use crate::activity::{ActivityKind, Direction, NewActivity, SourceKind};

/// A stored activity, for listings and reports.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ActivityRow {
    pub id: i64,
    pub rep_id: String,
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
    pub source_id: String,
    pub thread_key: Option<String>,
    pub subject: Option<String>,
    pub direction: String,
}

/// Activities per rep and kind.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KindCount {
    pub rep_id: String,
    pub kind: String,
    pub count: i64,
}

impl Tx {
    /// Records an activity unless its natural key is already stored. Returns the new id, or
    /// `None` when it was a duplicate (see [`Tx::record_activities`]).
    pub async fn record_activity(&mut self, a: &NewActivity, now: DateTime<Utc>) -> Result<Option<i64>> {
        Ok(self
            .record_activities(std::slice::from_ref(a), now)
            .await?
            .pop()
            .flatten())
    }
}

impl Tx {
    /// Records many activities at once (a few statements per hundred rows instead of two per
    /// row). Returns, for each input, its new id or `None` when its natural key existed.
    ///
    /// A message a sequence sent is logged when it is sent (source `sequence`, keyed by its
    /// Message-ID); when mail capture later sees its copy in Sent, that is the same activity
    /// and is not logged again.
    pub async fn record_activities(&mut self, list: &[NewActivity], now: DateTime<Utc>) -> Result<Vec<Option<i64>>> {
        let sent_by_mail: Vec<&str> = list
            .iter()
            .filter(|a| a.source == SourceKind::Mail && a.kind == ActivityKind::EmailSent)
            .map(|a| a.source_id.as_str())
            .collect();
        if sent_by_mail.is_empty() {
            return self.record_new_activities(list, now).await;
        }
        let mut by_sequence: HashSet<(String, String)> = HashSet::new();
        for chunk in sent_by_mail.chunks(500) {
            let rows: Vec<(String, String)> = with_tx!(self, |conn| {
                // Every message a sequence planned is in the outbox with its Message-ID before it
                // is sent, so a copy seen in Sent before the send was recorded (a crash between
                // the two) is recognised too; the sequence logs it when it records the send.
                let mut qb = QueryBuilder::new(
                    "SELECT e.rep_id, o.message_id FROM outbox o JOIN enrollments e ON e.id = o.enrollment_id
                     WHERE o.message_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(&mut *conn).await
            })
            .context("looking up messages sent by sequences")?;
            by_sequence.extend(rows);
        }
        let is_sequence_copy = |a: &NewActivity| {
            a.source == SourceKind::Mail
                && a.kind == ActivityKind::EmailSent
                && by_sequence.contains(&(a.rep_id.clone(), a.source_id.clone()))
        };
        let kept: Vec<NewActivity> = list.iter().filter(|a| !is_sequence_copy(a)).cloned().collect();
        let mut ids = self.record_new_activities(&kept, now).await?.into_iter();
        Ok(list
            .iter()
            .map(|a| {
                if is_sequence_copy(a) {
                    None
                } else {
                    ids.next().flatten()
                }
            })
            .collect())
    }

    async fn record_new_activities(&mut self, list: &[NewActivity], now: DateTime<Utc>) -> Result<Vec<Option<i64>>> {
        // One row per natural key: PostgreSQL refuses to update a row twice in one statement.
        // A key that comes twice counts once; a reply beats plain received mail.
        let mut unique: Vec<&NewActivity> = Vec::with_capacity(list.len());
        let mut position: HashMap<(&str, &str, &str, &str), usize> = HashMap::with_capacity(list.len());
        for a in list {
            let key = (
                a.rep_id.as_str(),
                a.dedup_kind(),
                a.source.as_str(),
                a.source_id.as_str(),
            );
            match position.get(&key) {
                Some(&i) => {
                    if unique[i].kind == ActivityKind::EmailReceived && a.kind == ActivityKind::ReplyReceived {
                        unique[i] = a;
                    }
                }
                None => {
                    position.insert(key, unique.len());
                    unique.push(a);
                }
            }
        }
        // The id each unique key got (inserted, or upgraded to a reply); `None`: it existed.
        // SQLite links the leads as it inserts; PostgreSQL links them in bulk afterwards.
        let mut new_ids = match self {
            Tx::Sqlite(t, _) => super::sqlite_bulk::insert_activities(t, &unique, now).await?,
            Tx::Postgres(t) => {
                let mut new_ids: Vec<Option<i64>> = vec![None; unique.len()];
                for chunk in unique.chunks(ROWS_PER_INSERT) {
                    for (id, rep, dedup_kind, source, source_id) in insert_returning_keys(t, chunk, now).await? {
                        let key = (rep.as_str(), dedup_kind.as_str(), source.as_str(), source_id.as_str());
                        if let Some(&i) = position.get(&key) {
                            new_ids[i] = Some(id);
                        }
                    }
                }
                let links: Vec<(i64, i64)> = unique
                    .iter()
                    .zip(&new_ids)
                    .filter_map(|(a, id)| id.map(|id| a.lead_ids.iter().map(move |l| (id, *l))))
                    .flatten()
                    .collect();
                for chunk in links.chunks(ROWS_PER_INSERT) {
                    let (activities, leads): (Vec<i64>, Vec<i64>) = chunk.iter().copied().unzip();
                    sqlx::query(
                        "INSERT INTO activity_leads (activity_id, lead_id)
                         SELECT * FROM UNNEST($1::int8[], $2::int8[]) ON CONFLICT DO NOTHING",
                    )
                    .bind(activities)
                    .bind(leads)
                    .execute(&mut **t)
                    .await
                    .context("linking activities to leads")?;
                }
                new_ids
            }
        };
        self.record_first_outbound(&unique, &new_ids).await?;
        // A key twice in one call: the first takes the id, the rest are duplicates.
        let out = list
            .iter()
            .map(|a| {
                let i = position[&(
                    a.rep_id.as_str(),
                    a.dedup_kind(),
                    a.source.as_str(),
                    a.source_id.as_str(),
                )];
                new_ids[i].take()
            })
            .collect();
        Ok(out)
    }
}

impl Tx {
    /// Links activities recorded before (found by their natural key) to those of their
    /// `lead_ids` they are not linked to yet, and keeps `lead_first_outbound` as recording does:
    /// a message matched again after a lead import gains the new lead. Returns how many of the
    /// activities gained a lead. One statement per link: only mail matched again after a lead
    /// import comes here, not a backfill's bulk.
    pub async fn link_recorded(&mut self, list: &[&NewActivity]) -> Result<usize> {
        let mut gained: Vec<NewActivity> = Vec::new();
        let mut ids = Vec::new();
        for a in list {
            let mut new_leads = Vec::new();
            let mut activity_id = None;
            for &lead in &a.lead_ids {
                let linked: Option<i64> = with_tx!(self, |conn| {
                    sqlx::query_scalar(
                        "INSERT INTO activity_leads (activity_id, lead_id)
                         SELECT id, $1 FROM activities
                         WHERE rep_id = $2 AND dedup_kind = $3 AND source = $4 AND source_id = $5
                         ON CONFLICT DO NOTHING RETURNING activity_id",
                    )
                    .bind(lead)
                    .bind(&a.rep_id)
                    .bind(a.dedup_kind())
                    .bind(a.source.as_str())
                    .bind(&a.source_id)
                    .fetch_optional(&mut *conn)
                    .await
                })
                .context("linking a recorded activity to a lead")?;
                if let Some(id) = linked {
                    new_leads.push(lead);
                    activity_id = Some(id);
                }
            }
            if !new_leads.is_empty() {
                gained.push(NewActivity {
                    lead_ids: new_leads,
                    ..(*a).clone()
                });
                ids.push(activity_id);
            }
        }
        let refs: Vec<&NewActivity> = gained.iter().collect();
        self.record_first_outbound(&refs, &ids).await?;
        Ok(gained.len())
    }

    /// Keeps `lead_first_outbound` for activities just recorded or linked (`ids`: the id of each
    /// of `list`, `None` for those that were not): see [`first_outbound`].
    async fn record_first_outbound(&mut self, list: &[&NewActivity], ids: &[Option<i64>]) -> Result<()> {
        let firsts = first_outbound(list, ids);
        if !firsts.is_empty() {
            match self {
                Tx::Sqlite(t, _) => super::sqlite_bulk::upsert_first_outbound(t, &firsts).await?,
                Tx::Postgres(t) => upsert_first_outbound(t, &firsts).await?,
            }
        }
        Ok(())
    }
}

/// A lead's earliest outbound activity among those just recorded: a candidate for
/// `lead_first_outbound`, where it replaces an existing row only if it is earlier.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FirstOutbound<'a> {
    pub lead_id: i64,
    pub rep_id: &'a str,
    pub activity_id: i64,
    pub first_at: DateTime<Utc>,
}

/// Per lead, the earliest outbound activity of `list` that got an id (`ids`, in the same order);
/// on equal times the first in the list. Computed once per call instead of by a trigger once per
/// lead link (migration 0008): the same rows, written per batch instead of per link.
pub(super) fn first_outbound<'a>(list: &[&'a NewActivity], ids: &[Option<i64>]) -> Vec<FirstOutbound<'a>> {
    let mut position: HashMap<i64, usize> = HashMap::new();
    let mut out: Vec<FirstOutbound<'a>> = Vec::new();
    for (a, id) in list.iter().zip(ids) {
        let Some(id) = *id else { continue };
        if a.direction != Direction::Outbound {
            continue;
        }
        for &lead_id in &a.lead_ids {
            let first = FirstOutbound {
                lead_id,
                rep_id: &a.rep_id,
                activity_id: id,
                first_at: a.occurred_at,
            };
            match position.get(&lead_id) {
                Some(&i) if first.first_at < out[i].first_at => out[i] = first,
                Some(_) => {}
                None => {
                    position.insert(lead_id, out.len());
                    out.push(first);
                }
            }
        }
    }
    out
}

/// Records leads' first outbound contacts on PostgreSQL (one array per column, as
/// [`insert_returning_keys`]): each row replaces the lead's existing one only if it is earlier.
async fn upsert_first_outbound(conn: &mut sqlx::PgConnection, firsts: &[FirstOutbound<'_>]) -> Result<()> {
    for chunk in firsts.chunks(ROWS_PER_INSERT) {
        sqlx::query(
            "INSERT INTO lead_first_outbound (lead_id, rep_id, activity_id, first_at)
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::timestamptz[])
             ON CONFLICT (lead_id) DO UPDATE SET rep_id = excluded.rep_id,
                activity_id = excluded.activity_id, first_at = excluded.first_at
             WHERE excluded.first_at < lead_first_outbound.first_at",
        )
        .bind(chunk.iter().map(|f| f.lead_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|f| f.rep_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|f| f.activity_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|f| f.first_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("recording leads' first outbound contacts")?;
    }
    Ok(())
}

/// Inserts activities in one statement and returns the natural key of each row inserted (or
/// upgraded to a reply), with its id: PostgreSQL returns them in no promised order. The rows go
/// as one array per column: a dozen parameters and a small plan however many rows there are
/// (a VALUES list of a thousand rows is planned afresh, parameter by parameter, every time).
async fn insert_returning_keys(
    conn: &mut sqlx::PgConnection,
    chunk: &[&NewActivity],
    now: DateTime<Utc>,
) -> Result<Vec<(i64, String, String, String, String)>> {
    fn column<'a, T>(chunk: &[&'a NewActivity], f: impl Fn(&'a NewActivity) -> T) -> Vec<T> {
        chunk.iter().map(|a| f(a)).collect()
    }
    sqlx::query_as(
        "INSERT INTO activities (rep_id, kind, occurred_at, source, source_id, thread_key, subject,
            direction, details, dedup_kind, created_at)
         SELECT v.*, $11 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[]) AS v
         -- A reply recognised late (its original was logged after it) upgrades the kind.
         ON CONFLICT (source_id, rep_id, dedup_kind, source) DO UPDATE SET kind = excluded.kind
         WHERE activities.kind = 'email_received' AND excluded.kind = 'reply_received'
         RETURNING id, rep_id, dedup_kind, source, source_id",
    )
    .bind(column(chunk, |a| a.rep_id.as_str()))
    .bind(column(chunk, |a| a.kind.as_str()))
    .bind(column(chunk, |a| a.occurred_at))
    .bind(column(chunk, |a| a.source.as_str()))
    .bind(column(chunk, |a| a.source_id.as_str()))
    .bind(column(chunk, |a| a.thread_key.as_deref()))
    .bind(column(chunk, |a| a.subject.as_deref()))
    .bind(column(chunk, |a| a.direction.as_str()))
    .bind(column(chunk, |a| Json(&a.details)))
    .bind(column(chunk, |a| a.dedup_kind()))
    .bind(now)
    .fetch_all(conn)
    .await
    .context("recording activities")
}

impl Store {
    /// Records one activity in its own transaction (see [`Tx::record_activity`]).
    pub async fn record_activity(&self, a: &NewActivity) -> Result<Option<i64>> {
        let mut tx = self.begin().await?;
        let id = tx.record_activity(a, self.now()).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Activities per rep and kind, optionally limited to `[from, to)`.
    pub async fn count_by_rep_and_kind(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<KindCount>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, KindCount>(
                "SELECT rep_id, kind, COUNT(*) AS count FROM activities
                 WHERE ($1 IS NULL OR occurred_at >= $1) AND ($2 IS NULL OR occurred_at < $2)
                 GROUP BY rep_id, kind ORDER BY rep_id, kind",
            )
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await
        })
        .context("counting activities")
    }

    /// The activities linked to a lead, newest first.
    pub async fn activities_for_lead(&self, lead_id: i64) -> Result<Vec<ActivityRow>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, ActivityRow>(
                "SELECT a.id, a.rep_id, a.kind, a.occurred_at, a.source, a.source_id, a.thread_key, a.subject, a.direction
                 FROM activities a JOIN activity_leads al ON al.activity_id = a.id
                 WHERE al.lead_id = $1 ORDER BY a.occurred_at DESC, a.id DESC",
            )
            .bind(lead_id)
            .fetch_all(pool)
            .await
        })
        .context("listing a lead's activities")
    }

    /// Most recent activities, newest first.
    pub async fn recent_activities(&self, limit: i64) -> Result<Vec<ActivityRow>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, ActivityRow>(
                "SELECT id, rep_id, kind, occurred_at, source, source_id, thread_key, subject, direction
                 FROM activities ORDER BY occurred_at DESC, id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .context("listing activities")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn mail(rep: &str, id: &str, direction: Direction, day: u32, leads: &[i64]) -> NewActivity {
        NewActivity {
            rep_id: rep.into(),
            kind: match direction {
                Direction::Outbound => ActivityKind::EmailSent,
                _ => ActivityKind::EmailReceived,
            },
            occurred_at: Utc.with_ymd_and_hms(2026, 11, day, 9, 0, 0).unwrap(),
            source: SourceKind::Mail,
            source_id: id.into(),
            thread_key: None,
            subject: None,
            direction,
            lead_ids: leads.to_vec(),
            details: serde_json::json!({}),
        }
    }

    #[test]
    fn first_outbound_is_the_earliest_outbound_recorded_per_lead() {
        let list = [
            mail("ann", "<1@x>", Direction::Outbound, 10, &[1, 2]),
            // Earlier, but its key existed: no id, not a candidate.
            mail("ann", "<2@x>", Direction::Outbound, 1, &[1]),
            // Earlier, inbound: never a first contact.
            mail("bob", "<3@x>", Direction::Inbound, 2, &[2]),
            mail("bob", "<4@x>", Direction::Outbound, 5, &[2, 3]),
            // The same time as the first for lead 1: the first in the list stays.
            mail("bob", "<5@x>", Direction::Outbound, 10, &[1]),
        ];
        let refs: Vec<&NewActivity> = list.iter().collect();
        let ids = [Some(11), None, Some(13), Some(14), Some(15)];
        let at = |day| Utc.with_ymd_and_hms(2026, 11, day, 9, 0, 0).unwrap();
        let row = |lead_id, rep_id, activity_id, day| FirstOutbound {
            lead_id,
            rep_id,
            activity_id,
            first_at: at(day),
        };
        assert_eq!(
            first_outbound(&refs, &ids),
            vec![row(1, "ann", 11, 10), row(2, "bob", 14, 5), row(3, "bob", 14, 5)]
        );
        assert!(first_outbound(&refs, &[None; 5]).is_empty());
    }
}
