//! Leads and the companies their domains belong to.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::{Backend, Store, Tx, with_pool, with_tx};

/// A lead as imported: the email is already normalized (lower-case).
#[derive(Debug, Clone, PartialEq)]
pub struct NewLead {
    pub email: String,
    pub name: Option<String>,
    pub company_name: Option<String>,
    /// The company's domain, when the address is not a free-mail one.
    pub company_domain: Option<String>,
    pub owner_rep: Option<String>,
    pub time_zone: Option<String>,
    pub status: Option<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// Which optional columns an import carries; absent columns never overwrite stored values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeadColumns {
    pub name: bool,
    pub company: bool,
    pub owner: bool,
    pub time_zone: bool,
    pub status: bool,
    pub attributes: bool,
}

impl LeadColumns {
    pub fn all() -> Self {
        LeadColumns {
            name: true,
            company: true,
            owner: true,
            time_zone: true,
            status: true,
            attributes: true,
        }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, o: Self) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
    }
}

/// A stored lead.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Lead {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub company_name: Option<String>,
    pub company_domain: Option<String>,
    pub owner_rep: Option<String>,
    pub time_zone: Option<String>,
    pub status: String,
    pub attributes: Json<serde_json::Value>,
    pub bounced_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

macro_rules! lead_select {
    ($tail:literal) => {
        concat!(
            "SELECT l.id, l.email, l.name, l.company_name, c.domain AS company_domain, l.owner_rep,
        l.time_zone, l.status, l.attributes, l.bounced_at, l.unsubscribed_at, l.created_at
     FROM leads l LEFT JOIN companies c ON c.id = l.company_id ",
            $tail
        )
    };
}
pub(super) use lead_select;

/// Rows per statement on SQLite: 8 parameters a row stays far below its variable limit.
const SQLITE_BATCH: usize = 1000;

/// Rows per statement on PostgreSQL, where a batch is 8 array parameters whatever its size.
/// Few, large statements also keep sqlx 0.9.0's missing TCP_NODELAY (about 40 ms a
/// statement over TCP, sqlx issue 4335) from dominating.
const POSTGRES_BATCH: usize = 10_000;

/// Rows per transaction.
const COMMIT_EVERY: usize = 20_000;

/// Company ids already written during one import, by domain, with the name written: a file
/// usually has many leads per company, and each company needs writing only once.
#[derive(Default)]
struct CompanyCache(HashMap<String, (i64, Option<String>)>);

impl Store {
    /// Inserts new leads and updates existing ones (by case-insensitive email). Rows go to the
    /// database in statements of [`UPSERT_BATCH`] rows and are committed every
    /// [`COMMIT_EVERY`] rows: per-row commits cost a disk flush each on PostgreSQL, while one
    /// huge transaction would hold SQLite's write lock for the whole file. Duplicate emails
    /// inside `leads` must be removed by the caller.
    pub async fn upsert_leads(&self, leads: &[NewLead], cols: LeadColumns) -> Result<UpsertCounts> {
        let mut total = UpsertCounts::default();
        let mut companies = CompanyCache::default();
        let batch = match self.backend() {
            Backend::Sqlite => SQLITE_BATCH,
            Backend::Postgres => POSTGRES_BATCH,
        };
        for commit_chunk in leads.chunks(COMMIT_EVERY) {
            let mut tx = self.begin().await?;
            for chunk in commit_chunk.chunks(batch) {
                total += upsert_batch(&mut tx, chunk, cols, &mut companies, self.now()).await?;
            }
            tx.commit().await?;
        }
        Ok(total)
    }

    /// Changes whenever leads are added or updated: the number of leads and the latest update.
    pub async fn leads_version(&self) -> Result<(i64, Option<DateTime<Utc>>)> {
        with_pool!(self, |pool| sqlx::query_as(
            "SELECT COUNT(*), MAX(updated_at) FROM leads"
        )
        .fetch_one(pool)
        .await)
        .context("checking leads")
    }

    pub async fn count_leads(&self) -> Result<i64> {
        with_pool!(self, |pool| sqlx::query_scalar("SELECT COUNT(*) FROM leads")
            .fetch_one(pool)
            .await)
        .context("counting leads")
    }

    /// Leads ordered by email, a page at a time.
    pub async fn list_leads(&self, limit: i64, offset: i64) -> Result<Vec<Lead>> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, Lead>(lead_select!("ORDER BY l.email_key LIMIT $1 OFFSET $2"))
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await
        })
        .context("listing leads")
    }

    pub async fn lead_by_email(&self, email: &str) -> Result<Option<Lead>> {
        let key = email.trim().to_lowercase();
        with_pool!(self, |pool| {
            sqlx::query_as::<_, Lead>(lead_select!("WHERE l.email_key = $1"))
                .bind(&key)
                .fetch_optional(pool)
                .await
        })
        .context("looking up a lead")
    }
}

/// One batch as columns, in the order the SQL below names them `v.column1` … `v.column8`
/// (the default column names of a VALUES list on both backends).
struct Columns<'a> {
    email: Vec<&'a str>,
    name: Vec<Option<&'a str>>,
    company_id: Vec<Option<i64>>,
    company_name: Vec<Option<&'a str>>,
    owner: Vec<Option<&'a str>>,
    time_zone: Vec<Option<&'a str>>,
    status: Vec<Option<&'a str>>,
    attributes: Vec<Json<&'a serde_json::Map<String, serde_json::Value>>>,
}

impl<'a> Columns<'a> {
    fn new(leads: &[&'a NewLead], company_ids: &HashMap<String, (i64, Option<String>)>) -> Self {
        Columns {
            email: leads.iter().map(|l| l.email.as_str()).collect(),
            name: leads.iter().map(|l| l.name.as_deref()).collect(),
            company_id: leads
                .iter()
                .map(|l| {
                    l.company_domain
                        .as_ref()
                        .and_then(|d| company_ids.get(d).map(|(id, _)| *id))
                })
                .collect(),
            company_name: leads.iter().map(|l| l.company_name.as_deref()).collect(),
            owner: leads.iter().map(|l| l.owner_rep.as_deref()).collect(),
            time_zone: leads.iter().map(|l| l.time_zone.as_deref()).collect(),
            status: leads.iter().map(|l| l.status.as_deref()).collect(),
            attributes: leads.iter().map(|l| Json(&l.attributes)).collect(),
        }
    }

    /// SQLite: the rows as a VALUES list (`v.column1` …).
    fn push_values(&self, qb: &mut QueryBuilder<'a, sqlx::Sqlite>) {
        qb.push("(");
        qb.push_values(0..self.email.len(), |mut b, i| {
            b.push_bind(self.email[i])
                .push_bind(self.name[i])
                .push_bind(self.company_id[i])
                .push_bind(self.company_name[i])
                .push_bind(self.owner[i])
                .push_bind(self.time_zone[i])
                .push_bind(self.status[i])
                .push_bind(Json(self.attributes[i].0));
        });
        qb.push(") AS v");
    }

    /// PostgreSQL: the rows as one array per column, so a batch is 8 parameters and the plan
    /// stays small however many rows there are.
    fn push_unnest(self, qb: &mut QueryBuilder<'a, sqlx::Postgres>) {
        qb.push("UNNEST(");
        qb.push_bind(self.email).push("::text[], ");
        qb.push_bind(self.name).push("::text[], ");
        qb.push_bind(self.company_id).push("::int8[], ");
        qb.push_bind(self.company_name).push("::text[], ");
        qb.push_bind(self.owner).push("::text[], ");
        qb.push_bind(self.time_zone).push("::text[], ");
        qb.push_bind(self.status).push("::text[], ");
        qb.push_bind(self.attributes).push("::jsonb[]");
        qb.push(") AS v(column1, column2, column3, column4, column5, column6, column7, column8)");
    }
}

const INSERT_HEAD: &str = "INSERT INTO leads (email, email_key, name, company_id, company_name, owner_rep,
        time_zone, status, attributes, origin, created_at, updated_at)
    SELECT v.column1, v.column1, v.column2, v.column3, v.column4, v.column5, v.column6,
        COALESCE(v.column7, 'new'), v.column8, 'import', ";

async fn upsert_batch(
    tx: &mut Tx,
    leads: &[NewLead],
    cols: LeadColumns,
    cache: &mut CompanyCache,
    now: DateTime<Utc>,
) -> Result<UpsertCounts> {
    // 1. Companies not written yet in this import (or with a new name), one row per domain:
    // a statement may not touch the same row twice.
    let mut companies: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for l in leads {
        if let Some(d) = &l.company_domain {
            let name = companies.entry(d.as_str()).or_default();
            if l.company_name.is_some() {
                *name = l.company_name.as_deref();
            }
        }
    }
    companies.retain(|d, name| match cache.0.get(*d) {
        Some((_, cached)) => name.is_some() && cached.as_deref() != *name,
        None => true,
    });
    if !companies.is_empty() {
        let rows: Vec<(i64, String)> = with_tx!(tx, |conn| {
            let mut qb = QueryBuilder::new("INSERT INTO companies (domain, name, created_at) ");
            qb.push_values(&companies, |mut b, (domain, name)| {
                b.push_bind(*domain).push_bind(*name).push_bind(now);
            });
            qb.push(
                " ON CONFLICT (domain) DO UPDATE SET name = excluded.name
                  WHERE excluded.name IS NOT NULL AND companies.name IS DISTINCT FROM excluded.name",
            );
            qb.build().execute(&mut *conn).await?;
            let mut qb = QueryBuilder::new("SELECT id, domain FROM companies WHERE domain IN (");
            let mut sep = qb.separated(", ");
            for d in companies.keys() {
                sep.push_bind(*d);
            }
            qb.push(")");
            qb.build_query_as::<(i64, String)>().fetch_all(&mut *conn).await
        })
        .context("upserting companies")?;
        for (id, domain) in rows {
            let name = companies.get(domain.as_str()).copied().flatten().map(str::to_owned);
            let entry = cache.0.entry(domain).or_insert((id, None));
            entry.0 = id;
            if name.is_some() {
                entry.1 = name;
            }
        }
    }
    let company_ids = &cache.0;

    // 2. Which of these leads exist already.
    let existing: HashSet<String> = match tx {
        Tx::Sqlite(t, _) => {
            let mut qb = QueryBuilder::new("SELECT email_key FROM leads WHERE email_key IN (");
            let mut sep = qb.separated(", ");
            for l in leads {
                sep.push_bind(l.email.as_str());
            }
            qb.push(")");
            qb.build_query_scalar::<String>().fetch_all(&mut **t).await
        }
        Tx::Postgres(t) => {
            let keys: Vec<&str> = leads.iter().map(|l| l.email.as_str()).collect();
            sqlx::query_scalar::<_, String>("SELECT email_key FROM leads WHERE email_key = ANY($1)")
                .bind(keys)
                .fetch_all(&mut **t)
                .await
        }
    }
    .context("looking up existing leads")?
    .into_iter()
    .collect();

    let (old, new): (Vec<&NewLead>, Vec<&NewLead>) = leads.iter().partition(|l| existing.contains(&l.email));

    // 3. New leads.
    let mut inserted = 0;
    if !new.is_empty() {
        let rows = Columns::new(&new, company_ids);
        inserted = match tx {
            Tx::Sqlite(t, _) => {
                let mut qb = QueryBuilder::new(INSERT_HEAD);
                qb.push_bind(now).push(", ").push_bind(now).push(" FROM ");
                rows.push_values(&mut qb);
                qb.push(" WHERE true ON CONFLICT (email_key) DO NOTHING");
                qb.build().execute(&mut **t).await.map(|r| r.rows_affected())
            }
            Tx::Postgres(t) => {
                let mut qb = QueryBuilder::new(INSERT_HEAD);
                qb.push_bind(now).push(", ").push_bind(now).push(" FROM ");
                rows.push_unnest(&mut qb);
                qb.push(" ON CONFLICT (email_key) DO NOTHING");
                qb.build().execute(&mut **t).await.map(|r| r.rows_affected())
            }
        }
        .context("inserting leads")?;
    }

    // 4. Existing leads: only the columns the import carries, only where something changed.
    let mut updated = 0;
    if !old.is_empty() {
        let mut sets: Vec<String> = Vec::new();
        let mut changed: Vec<String> = Vec::new();
        let mut col = |name: &str, expr: String| {
            changed.push(format!("leads.{name} IS DISTINCT FROM {expr}"));
            sets.push(format!("{name} = {expr}"));
        };
        if cols.name {
            col("name", "COALESCE(v.column2, leads.name)".into());
        }
        if cols.company {
            col("company_id", "COALESCE(v.column3, leads.company_id)".into());
            col("company_name", "COALESCE(v.column4, leads.company_name)".into());
        }
        if cols.owner {
            col("owner_rep", "COALESCE(v.column5, leads.owner_rep)".into());
        }
        if cols.time_zone {
            col("time_zone", "COALESCE(v.column6, leads.time_zone)".into());
        }
        if cols.status {
            col("status", "COALESCE(v.column7, leads.status)".into());
        }
        if cols.attributes {
            let merged = match tx.backend() {
                Backend::Sqlite => "json_patch(leads.attributes, v.column8)",
                Backend::Postgres => "(leads.attributes || v.column8)",
            };
            col("attributes", merged.into());
        }
        if !sets.is_empty() {
            let head = format!("UPDATE leads SET {}, updated_at = ", sets.join(", "));
            let tail = format!(" WHERE leads.email_key = v.column1 AND ({})", changed.join(" OR "));
            let rows = Columns::new(&old, company_ids);
            updated = match tx {
                Tx::Sqlite(t, _) => {
                    let mut qb = QueryBuilder::new(head);
                    qb.push_bind(now).push(" FROM ");
                    rows.push_values(&mut qb);
                    qb.push(tail);
                    qb.build().execute(&mut **t).await.map(|r| r.rows_affected())
                }
                Tx::Postgres(t) => {
                    let mut qb = QueryBuilder::new(head);
                    qb.push_bind(now).push(" FROM ");
                    rows.push_unnest(&mut qb);
                    qb.push(tail);
                    qb.build().execute(&mut **t).await.map(|r| r.rows_affected())
                }
            }
            .context("updating leads")?;
        }
    }

    Ok(UpsertCounts {
        inserted,
        updated,
        unchanged: (old.len() as u64).saturating_sub(updated) + (new.len() as u64 - inserted),
    })
}
