//! Bulk writes on SQLite, run on the connection itself instead of through sqlx's worker.
//!
//! sqlx runs every SQLite statement on a thread of its own: the arguments are copied into
//! owned values on the async side, sent over a channel, copied again by `sqlite3_bind_*`,
//! and every row a statement returns comes back as boxed values through another channel. For
//! the statements that write a whole batch of mail (thousands of bound values each) that
//! marshalling cost more than SQLite's own work: a profile of the mail backfill benchmark
//! showed a quarter of SQLite's thread binding, resetting and freeing arguments, and a third
//! of the ingest task encoding them and reading the returned ids back. Here those statements
//! are bound straight from the batch and run on the transaction's own connection (locked
//! meanwhile, so nothing else runs on it), inside the same transaction as the rest of the
//! batch. BENCHMARKS.md has the measurements.
//!
//! The values are written exactly as sqlx writes them (timestamps as RFC 3339 text, JSON as
//! text), so every other query reads them unchanged.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use foldhash::{HashMap, HashMapExt};

use sqlx::SqliteConnection;

use super::NewSeenMail;
use super::activities::FirstOutbound;
use crate::activity::NewActivity;

/// Runs `f` on the raw SQLite connection behind `conn`, within whatever transaction is open
/// on it, on the calling thread (a runtime worker: a batch of mail keeps it busy for about
/// 10 ms; every transaction here began with `BEGIN IMMEDIATE`, so SQLite never waits for its
/// busy timeout inside). `f` must not block on anything but SQLite: the connection is locked
/// meanwhile.
#[allow(unsafe_code)]
async fn on_connection<R>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R>,
) -> Result<R> {
    let mut locked = conn.lock_handle().await.context("locking the SQLite connection")?;
    // SAFETY: the handle is a valid open connection, and `locked` keeps every other user off
    // it until after `db` is dropped at the end of this block; a `Connection` made by
    // `from_handle` does not close the handle when dropped (it only finalizes the statements
    // it prepared). rusqlite's `hooks` features must stay off: with them, dropping it would
    // also clear the hooks sqlx set on the handle.
    let db = unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) }?;
    let result = f(&db);
    drop(db);
    drop(locked);
    Ok(result?)
}

/// How sqlx stores a `DateTime<Utc>` in SQLite (`to_rfc3339_opts(AutoSi, false)`).
fn timestamp(t: DateTime<Utc>) -> String {
    crate::clock::rfc3339(t, false)
}

/// `VALUES (…), …`: `rows` rows of the columns `columns` describes, `S` for a value shared by
/// every row and `?` for a value of the row's own. The shared values are parameters 1, 2, …
/// in the order of their columns (bound once per statement, not once per row: every bound text
/// is a copy SQLite allocates); the rows' own follow, row after row. A multi-row INSERT costs
/// SQLite less per row than one statement per row (measured: 13 ms against 8.5 ms for the
/// activities of a batch of 1,000 messages): one statement journal, one halt, pages met once.
fn values(rows: usize, columns: &str) -> String {
    let shared = columns.matches('S').count();
    let mut next = shared;
    let mut sql = String::with_capacity(10 + rows * columns.len() * 8);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        let mut shared_seen = 0;
        for (c, kind) in columns.chars().enumerate() {
            if c > 0 {
                sql.push_str(", ");
            }
            let n = if kind == 'S' {
                shared_seen += 1;
                shared_seen
            } else {
                next += 1;
                next
            };
            push_parameter(&mut sql, n);
        }
        sql.push(')');
    }
    sql
}

/// Appends `?n` (without `format!`, which cost more than the rest of building the statement).
fn push_parameter(sql: &mut String, n: usize) {
    sql.push('?');
    sql.push_str(itoa::Buffer::new().format(n));
}

/// Rows per multi-row statement. Parsing a statement of a thousand rows took a fifth of the time
/// of running it, so one statement of this size is prepared per call and run for every full
/// chunk; only the last, shorter chunk gets a statement of its own.
const ROWS_PER_STATEMENT: usize = 100;

/// Runs `run` on `rows` in chunks of [`ROWS_PER_STATEMENT`], each with the statement `sql`
/// makes for its number of rows; `run` gets the chunk and the index of its first row.
fn in_chunks<T>(
    db: &rusqlite::Connection,
    rows: &[T],
    sql: impl Fn(usize) -> String,
    mut run: impl FnMut(&mut rusqlite::Statement<'_>, &[T], usize) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut full = None;
    for (n, chunk) in rows.chunks(ROWS_PER_STATEMENT).enumerate() {
        let offset = n * ROWS_PER_STATEMENT;
        if chunk.len() == ROWS_PER_STATEMENT {
            if full.is_none() {
                full = Some(db.prepare(&sql(ROWS_PER_STATEMENT))?);
            }
            if let Some(stmt) = full.as_mut() {
                run(stmt, chunk, offset)?;
            }
        } else {
            run(&mut db.prepare(&sql(chunk.len()))?, chunk, offset)?;
        }
    }
    Ok(())
}

/// Binds the parameters of one statement in order: the shared ones, then row after row.
struct Binder<'s, 'c> {
    stmt: &'s mut rusqlite::Statement<'c>,
    next: usize,
}

impl Binder<'_, '_> {
    fn bind(&mut self, value: impl rusqlite::ToSql) -> rusqlite::Result<&mut Self> {
        self.next += 1;
        self.stmt.raw_bind_parameter(self.next, value)?;
        Ok(self)
    }
}

/// Inserts activities (one per natural key: the caller removed duplicates) and their lead
/// links. Returns, per activity, its id when it was inserted or upgraded to a reply, `None`
/// when its key existed.
pub(super) async fn insert_activities(
    conn: &mut SqliteConnection,
    list: &[&NewActivity],
    now: DateTime<Utc>,
) -> Result<Vec<Option<i64>>> {
    let now = timestamp(now);
    on_connection(conn, |db| {
        let mut ids = vec![None; list.len()];
        let mut links = Vec::new();
        let sql = |rows| {
            format!(
                "INSERT INTO activities (rep_id, kind, occurred_at, source, source_id, thread_key, subject,
                    direction, details, created_at, dedup_kind) {}
                 ON CONFLICT (source_id, rep_id, dedup_kind, source) DO UPDATE SET kind = excluded.kind
                 WHERE activities.kind = 'email_received' AND excluded.kind = 'reply_received'
                 RETURNING id, rep_id, dedup_kind, source, source_id",
                values(rows, "?????????S?")
            )
        };
        in_chunks(db, list, sql, |stmt, chunk, offset| {
            let mut b = Binder { stmt, next: 0 };
            b.bind(now.as_str())?;
            for a in chunk {
                b.bind(&a.rep_id)?
                    .bind(a.kind.as_str())?
                    .bind(timestamp(a.occurred_at))?
                    .bind(a.source.as_str())?
                    .bind(&a.source_id)?
                    .bind(&a.thread_key)?
                    .bind(&a.subject)?
                    .bind(a.direction.as_str())?
                    // Not `to_string`, which goes through `Display` (and a character at a time).
                    .bind(
                        serde_json::to_string(&a.details)
                            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
                    )?
                    .bind(a.dedup_kind())?;
            }
            // RETURNING rows come in no promised order: find each by its natural key.
            let mut position: HashMap<(&str, &str, &str, &str), usize> = HashMap::with_capacity(chunk.len());
            for (i, a) in chunk.iter().enumerate() {
                let key = (
                    a.rep_id.as_str(),
                    a.dedup_kind(),
                    a.source.as_str(),
                    a.source_id.as_str(),
                );
                position.insert(key, i);
            }
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next()? {
                let key = (
                    row.get_ref(1)?.as_str()?,
                    row.get_ref(2)?.as_str()?,
                    row.get_ref(3)?.as_str()?,
                    row.get_ref(4)?.as_str()?,
                );
                if let Some(&i) = position.get(&key) {
                    let id: i64 = row.get(0)?;
                    ids[offset + i] = Some(id);
                    links.extend(chunk[i].lead_ids.iter().map(|lead| (id, *lead)));
                }
            }
            Ok(())
        })?;
        let sql = |rows| {
            format!(
                "INSERT INTO activity_leads (activity_id, lead_id) {} ON CONFLICT DO NOTHING",
                values(rows, "??")
            )
        };
        in_chunks(db, &links, sql, |stmt, chunk, _| {
            let mut b = Binder { stmt, next: 0 };
            for (activity, lead) in chunk {
                b.bind(activity)?.bind(lead)?;
            }
            stmt.raw_execute().map(|_| ())
        })?;
        Ok(ids)
    })
    .await
    .context("recording activities")
}

/// Records leads' first outbound contacts: each row replaces the lead's existing one only if it
/// is earlier (see [`super::activities::first_outbound`]).
pub(super) async fn upsert_first_outbound(conn: &mut SqliteConnection, rows: &[FirstOutbound<'_>]) -> Result<()> {
    on_connection(conn, |db| {
        let sql = |rows| {
            format!(
                "INSERT INTO lead_first_outbound (lead_id, rep_id, activity_id, first_at) {}
                 ON CONFLICT (lead_id) DO UPDATE SET rep_id = excluded.rep_id, activity_id = excluded.activity_id,
                    first_at = excluded.first_at
                 WHERE excluded.first_at < lead_first_outbound.first_at",
                values(rows, "????")
            )
        };
        in_chunks(db, rows, sql, |stmt, chunk, _| {
            let mut b = Binder { stmt, next: 0 };
            for f in chunk {
                b.bind(f.lead_id)?
                    .bind(f.rep_id)?
                    .bind(f.activity_id)?
                    .bind(timestamp(f.first_at))?;
            }
            stmt.raw_execute().map(|_| ())
        })
    })
    .await
    .context("recording leads' first outbound contacts")
}

/// The kept header fields of a `mail_seen` row as JSON text, written into `buf`.
fn headers_json<'b, H: serde::Serialize>(
    headers: &Option<H>,
    buf: &'b mut Vec<u8>,
) -> rusqlite::Result<Option<&'b str>> {
    let Some(h) = headers else { return Ok(None) };
    buf.clear();
    serde_json::to_writer(&mut *buf, h).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    // serde_json writes UTF-8 only.
    Ok(Some(std::str::from_utf8(buf).map_err(rusqlite::Error::Utf8Error)?))
}

/// Inserts `mail_seen` rows (see [`super::Tx::insert_seen`] for the rules).
///
/// Written as `INSERT OR FAIL … ON CONFLICT DO NOTHING`, and the rows that were there already
/// updated afterwards, instead of one upsert: SQLite gives an upsert (`DO UPDATE`) of several
/// rows a statement journal, a copy of every page the statement changes that existed before
/// it, so that it can undo the statement alone if a later row fails. This form needs none
/// (`OR FAIL` undoes nothing, and an error here rolls the whole transaction back; a foreign
/// key on the table would bring the journal back). In a backfill no row was there before: the
/// seen rows cost 10% fewer instructions (BENCHMARKS.md, 2026-12-04 evening).
pub(super) async fn insert_seen<H: serde::Serialize>(
    conn: &mut SqliteConnection,
    mailbox_id: &str,
    rep_id: &str,
    rows: &[NewSeenMail<'_, H>],
    now: DateTime<Utc>,
) -> Result<()> {
    let now = timestamp(now);
    on_connection(conn, |db| {
        let mut json = Vec::new();
        let mut present = Vec::new();
        let sql = |rows| {
            format!(
                "INSERT OR FAIL INTO mail_seen (mailbox_id, folder, item_key, message_id, rep_id, decision, reason,
                    occurred_at, seen_at, headers, message_key) {}
                 ON CONFLICT (mailbox_id, folder, item_key) DO NOTHING",
                values(rows, "S???S???S??")
            )
        };
        in_chunks(db, rows, sql, |stmt, chunk, offset| {
            let mut b = Binder { stmt, next: 0 };
            b.bind(mailbox_id)?.bind(rep_id)?.bind(now.as_str())?;
            for r in chunk {
                let headers = headers_json(&r.headers, &mut json)?;
                b.bind(r.folder)?
                    .bind(r.item_key)?
                    .bind(r.message_id)?
                    .bind(r.decision)?
                    .bind(r.reason)?
                    .bind(r.occurred_at.map(timestamp))?
                    .bind(headers)?
                    .bind(super::mail::message_key(r.message_id))?;
            }
            if stmt.raw_execute()? < chunk.len() {
                // Some were there: which ones is not told, so every row of the chunk is offered
                // the update (a no-op for the rows just inserted).
                present.push(offset..offset + chunk.len());
            }
            Ok(())
        })?;
        if !present.is_empty() {
            // A message seen before, matched again after a lead import: the rule of
            // `Tx::insert_seen`, as PostgreSQL's upsert writes it.
            let mut update = db.prepare(
                "UPDATE mail_seen SET decision = ?1, reason = ?2, headers = ?6
                 WHERE mailbox_id = ?3 AND folder = ?4 AND item_key = ?5
                    AND (decision = 'skipped' OR ?1 NOT IN ('skipped', 'unreadable'))",
            )?;
            for r in present.into_iter().flat_map(|range| &rows[range]) {
                let headers = headers_json(&r.headers, &mut json)?;
                update.execute((r.decision, r.reason, mailbox_id, r.folder, r.item_key, headers))?;
            }
        }
        Ok(())
    })
    .await
    .context("recording seen messages")
}

#[cfg(test)]
mod tests {
    use super::values;

    #[test]
    fn shared_values_are_numbered_first_and_reused_by_every_row() {
        assert_eq!(values(2, "S??S"), " VALUES (?1, ?3, ?4, ?2), (?1, ?5, ?6, ?2)");
        assert_eq!(values(2, "??"), " VALUES (?1, ?2), (?3, ?4)");
        let wide = values(1000, "???????????");
        assert!(wide.ends_with(", ?10999, ?11000)"), "{}", &wide[wide.len() - 40..]);
        assert!(wide.starts_with(" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11), (?12,"));
    }
}
