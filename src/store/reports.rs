//! Queries behind targets and progress: period counts for a set of reps, first contacts,
//! candidate proposals, daily activity, filtered listings, and the figures `/metrics` shows.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::{ActivityRow, Backend, KindCount, Store, with_pool};

/// A sent mail that may be a proposal: its subject and the attachment names it carried.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SentMail {
    pub rep_id: String,
    pub subject: Option<String>,
    pub details: Json<serde_json::Value>,
}

impl SentMail {
    /// Attachment file names recorded at capture (`details.attachments`).
    pub fn attachments(&self) -> Vec<String> {
        self.details
            .0
            .get("attachments")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// Reps that share one period (the same time zone) and its bounds.
#[derive(Debug, Clone, Copy)]
pub struct RepGroup<'a> {
    pub reps: &'a [String],
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Filters of an activity listing; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub rep_id: Option<String>,
    /// A lead's email address (case-insensitive).
    pub lead: Option<String>,
    pub kind: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only activities with an id below this one (the `next` cursor of the previous page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// One source's sync health for `/metrics`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SourceSync {
    pub source_id: String,
    pub kind: String,
    pub state: String,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// One statement for several groups of reps: per group, `select` (which ends in `WHERE`), the
/// group's reps, its `[from, to)` on `time_column`, then `tail`; the parts joined by
/// `UNION ALL`, so the round trips do not grow with the number of groups.
fn union_per_group<'a, DB: sqlx::Database>(
    groups: &[&'a RepGroup<'a>],
    select: &str,
    time_column: &str,
    tail: impl Fn(&mut QueryBuilder<'a, DB>),
) -> QueryBuilder<'a, DB>
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("");
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        qb.push(select);
        push_reps(&mut qb, "rep_id", g.reps);
        qb.push(format!(" AND {time_column} >= ")).push_bind(g.from);
        qb.push(format!(" AND {time_column} < ")).push_bind(g.to);
        tail(&mut qb);
    }
    qb
}

fn push_reps<'a, DB: sqlx::Database>(qb: &mut QueryBuilder<'a, DB>, column: &str, reps: &'a [String])
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push(format!(" {column} IN ("));
    let mut sep = qb.separated(", ");
    for r in reps {
        sep.push_bind(r.as_str());
    }
    sep.push_unseparated(")");
}

impl Store {
    /// Activities per rep and kind, each group of reps over its own `[from, to)` (reps in one
    /// time zone share a period). One statement: a `UNION ALL` of one indexed range per group,
    /// so the round trips do not grow with the number of zones.
    pub async fn count_for_reps(&self, groups: &[RepGroup<'_>]) -> Result<Vec<KindCount>> {
        let groups: Vec<&RepGroup<'_>> = groups.iter().filter(|g| !g.reps.is_empty()).collect();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, |pool| {
            let mut qb = union_per_group(
                &groups,
                "SELECT rep_id, kind, COUNT(*) AS count FROM activities WHERE",
                "occurred_at",
                |qb| {
                    qb.push(" GROUP BY rep_id, kind");
                },
            );
            qb.build_query_as::<KindCount>().fetch_all(pool).await
        })
        .context("counting activities for a period")
    }

    /// Per rep, the leads whose first outbound activity (by anyone) was theirs, in the group's
    /// `[from, to)`.
    pub async fn first_contacts_for_reps(&self, groups: &[RepGroup<'_>]) -> Result<Vec<(String, i64)>> {
        let groups: Vec<&RepGroup<'_>> = groups.iter().filter(|g| !g.reps.is_empty()).collect();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, |pool| {
            let mut qb = union_per_group(
                &groups,
                "SELECT rep_id, COUNT(*) FROM lead_first_outbound WHERE",
                "first_at",
                |qb| {
                    qb.push(" GROUP BY rep_id");
                },
            );
            qb.build_query_as::<(String, i64)>().fetch_all(pool).await
        })
        .context("counting newly contacted leads")
    }

    /// Sent mail in each group's `[from, to)` that may be a proposal: its subject matches one of
    /// the SQL `LIKE` patterns, or it carried attachments. The caller applies the exact rules.
    pub async fn proposal_candidates(&self, groups: &[RepGroup<'_>], subject_like: &[String]) -> Result<Vec<SentMail>> {
        let groups: Vec<&RepGroup<'_>> = groups.iter().filter(|g| !g.reps.is_empty()).collect();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let details_text = match self.backend() {
            Backend::Sqlite => "details",
            Backend::Postgres => "details::text",
        };
        with_pool!(self, |pool| {
            let mut qb = union_per_group(
                &groups,
                "SELECT rep_id, subject, details FROM activities WHERE kind = 'email_sent' AND",
                "occurred_at",
                |qb| {
                    qb.push(format!(" AND ({details_text} LIKE '%\"attachments\"%'"));
                    for p in subject_like {
                        qb.push(" OR LOWER(subject) LIKE ").push_bind(p.as_str());
                    }
                    qb.push(")");
                },
            );
            qb.build_query_as::<SentMail>().fetch_all(pool).await
        })
        .context("reading sent mail for proposals")
    }

    /// The times of a rep's activities in `[from, to)`, for daily charts.
    pub async fn activity_times(
        &self,
        rep_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        with_pool!(self, |pool| {
            sqlx::query_scalar::<_, DateTime<Utc>>(
                "SELECT occurred_at FROM activities WHERE rep_id = $1 AND occurred_at >= $2 AND occurred_at < $3",
            )
            .bind(rep_id)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await
        })
        .context("reading activity times")
    }

    /// A page of activities, newest id first.
    pub async fn list_activities(&self, f: &ActivityFilter) -> Result<Vec<ActivityRow>> {
        with_pool!(self, |pool| {
            let mut qb = QueryBuilder::new(
                "SELECT a.id, a.rep_id, a.kind, a.occurred_at, a.source, a.source_id, a.thread_key, a.subject, a.direction
                 FROM activities a WHERE 1 = 1",
            );
            if let Some(r) = &f.rep_id {
                qb.push(" AND a.rep_id = ").push_bind(r);
            }
            if let Some(k) = &f.kind {
                qb.push(" AND a.kind = ").push_bind(k);
            }
            if let Some(l) = &f.lead {
                qb.push(
                    " AND EXISTS (SELECT 1 FROM activity_leads al JOIN leads l ON l.id = al.lead_id
                       WHERE al.activity_id = a.id AND l.email_key = ",
                )
                .push_bind(l.trim().to_lowercase())
                .push(")");
            }
            if let Some(t) = f.from {
                qb.push(" AND a.occurred_at >= ").push_bind(t);
            }
            if let Some(t) = f.to {
                qb.push(" AND a.occurred_at < ").push_bind(t);
            }
            if let Some(b) = f.before_id {
                qb.push(" AND a.id < ").push_bind(b);
            }
            qb.push(" ORDER BY a.id DESC LIMIT ").push_bind(f.limit);
            qb.build_query_as::<ActivityRow>().fetch_all(pool).await
        })
        .context("listing activities")
    }

    /// The lead emails linked to each of these activities.
    pub async fn lead_emails_for(&self, activity_ids: &[i64]) -> Result<Vec<(i64, String)>> {
        if activity_ids.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, |pool| {
            let mut qb = QueryBuilder::new(
                "SELECT al.activity_id, l.email FROM activity_leads al JOIN leads l ON l.id = al.lead_id
                 WHERE al.activity_id IN (",
            );
            let mut sep = qb.separated(", ");
            for id in activity_ids {
                sep.push_bind(*id);
            }
            sep.push_unseparated(") ORDER BY al.activity_id, l.email");
            qb.build_query_as::<(i64, String)>().fetch_all(pool).await
        })
        .context("reading the leads of activities")
    }

    /// Every source's last sync and error times, for `/metrics`.
    pub async fn source_syncs(&self) -> Result<Vec<SourceSync>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, SourceSync>(
                "SELECT source_id, kind, state, last_success_at, last_error_at FROM source_health ORDER BY source_id",
            )
            .fetch_all(pool)
            .await
        })
        .context("reading source health")
    }

    /// Rows of a `(label, count)` query, for the metrics whose SQL is a constant (outbox depth,
    /// sends by outcome: see `http::metrics`).
    pub async fn labelled_counts(&self, sql: &'static str) -> Result<Vec<(String, i64)>> {
        with_pool!(self, |pool| sqlx::query_as::<_, (String, i64)>(sql)
            .fetch_all(pool)
            .await)
        .with_context(|| format!("running metrics query {sql}"))
    }
}
