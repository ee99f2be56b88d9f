//! Progress reports with volume: 10 million activities of 100 reps over a year (four time
//! zones, ten teams), on SQLite and PostgreSQL. Measured: `report::progress` for every rep
//! (month and week), against a same-run baseline that reads the same rows the plainest way:
//! one `GROUP BY rep_id, kind` over the month's UTC range. Rows are generated in SQL (a
//! recursive CTE on SQLite, generate_series on PostgreSQL), not row by row.
//! Run with `scripts/bench report`; `RAPPORT_BENCH_ROWS` overrides the row count.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rapport::clock::ManualClock;
use rapport::config::Config;
use rapport::report::progress::{RepFilter, progress};
use rapport::store::Store;
use rapport::targets::{PeriodKind, Targets};

const REPS: usize = 100;
const LEADS: i64 = 200_000;
const ZONES: [&str; 4] = ["Europe/Stockholm", "America/New_York", "Asia/Tokyo", "UTC"];
/// Rows span this many seconds (one year) before the `now` of the bench.
const SPAN_SECS: i64 = 365 * 86_400;

fn rows() -> i64 {
    std::env::var("RAPPORT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn config(url: &str) -> Config {
    let mut y = format!("database: {{url: \"{url}\"}}\ninternal_domains: [example.com]\nreps:\n");
    for i in 0..REPS {
        y += &format!(
            "  - {{id: rep{i:03}, name: Rep {i}, email: rep{i}@example.com, time_zone: {}, team: team{}}}\n",
            ZONES[i % ZONES.len()],
            i % 10
        );
    }
    Config::from_str(std::path::Path::new("/tmp/bench.yaml"), &y).unwrap()
}

fn targets(config: &Config) -> Targets {
    let mut y = String::from(
        "proposals:\n  subject_patterns: [\"*proposal*\"]\n  attachment_patterns: [\"*proposal*.pdf\"]\ntargets:\n",
    );
    for t in 0..10 {
        for period in ["week", "month"] {
            y += &format!(
                "  - team: team{t}\n    period: {period}\n    goals: {{emails_sent: 200, replies_received: 50, meetings_booked: 10, meetings_held: 8, calls: 40, proposals_sent: 5, new_leads_contacted: 30}}\n"
            );
        }
    }
    Targets::from_str(std::path::Path::new("/tmp/targets.yaml"), &y, config).unwrap()
}

/// The SELECT list shared by both generators, over an integer `i`: rep by `i % 100`, kinds in
/// a fixed mix by `(i / 100) % 10` (so every rep gets every kind), one activity every ~3 s of the year, a proposal subject on 1 in 40 sent mails
/// and an attachment on 1 in 97.
const KIND_CASE: &str = "CASE (i / 100) % 10 WHEN 0 THEN 'email_sent' WHEN 1 THEN 'email_sent' WHEN 2 THEN 'email_sent' \
    WHEN 3 THEN 'email_received' WHEN 4 THEN 'reply_received' WHEN 5 THEN 'reply_received' \
    WHEN 6 THEN 'meeting_booked' WHEN 7 THEN 'meeting_held' WHEN 8 THEN 'call' ELSE 'task' END";

async fn generate(store: &Store, url: &str, n: i64) {
    let start = Instant::now();
    let first = now().timestamp() - SPAN_SECS;
    let step = SPAN_SECS as f64 / n as f64;
    if url.starts_with("sqlite:") {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        for s in [
            "PRAGMA cache_size = -400000",
            "PRAGMA synchronous = OFF",
            "DROP INDEX activities_rep_time_kind",
            "DROP INDEX activities_rep_kind_time",
            "DROP INDEX activities_time",
        ] {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
        let sql = format!(
            "INSERT INTO leads (email, email_key, status, attributes, origin, created_at, updated_at)
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {LEADS})
             SELECT 'lead' || i || '@c' || (i % 5000) || '.example', 'lead' || i || '@c' || (i % 5000) || '.example',
                    'new', '{{}}', 'import', '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00' FROM n"
        );
        sqlx::query(&sql).execute(&mut c).await.unwrap();
        let sql = format!(
            "INSERT INTO activities (rep_id, kind, dedup_kind, occurred_at, source, source_id, subject, direction, details, created_at)
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {n} - 1)
             SELECT printf('rep%03d', i % {REPS}), {KIND_CASE}, {KIND_CASE},
                    strftime('%Y-%m-%dT%H:%M:%S+00:00', {first} + CAST(i * {step} AS INTEGER), 'unixepoch'),
                    'bench', 'b' || i,
                    CASE WHEN (i / 100) % 40 = 0 THEN 'Proposal for Q1' ELSE 'Hello' END,
                    CASE WHEN (i / 100) % 10 < 3 OR (i / 100) % 10 = 8 THEN 'outbound' ELSE 'inbound' END,
                    CASE WHEN (i / 100) % 970 = 0 THEN '{{\"attachments\":[\"offer-proposal.pdf\"]}}' ELSE '{{}}' END,
                    '2026-11-20T15:00:00+00:00'
             FROM n"
        );
        sqlx::query(&sql).execute(&mut c).await.unwrap();
        // First outbound contact of each lead: the first `LEADS` outbound activities.
        sqlx::query(
            "INSERT INTO lead_first_outbound (lead_id, rep_id, activity_id, first_at)
             SELECT ROW_NUMBER() OVER (ORDER BY id), rep_id, id, occurred_at FROM activities
             WHERE direction = 'outbound' AND id % 37 = 0 LIMIT $1",
        )
        .bind(LEADS)
        .execute(&mut c)
        .await
        .unwrap();
        for s in [
            "CREATE INDEX activities_rep_time_kind ON activities(rep_id, occurred_at, kind)",
            "CREATE INDEX activities_rep_kind_time ON activities(rep_id, kind, occurred_at)",
            "CREATE INDEX activities_time ON activities(occurred_at)",
            "ANALYZE",
        ] {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
    } else {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        for s in [
            "DROP INDEX activities_rep_time_kind",
            "DROP INDEX activities_rep_kind_time",
            "DROP INDEX activities_time",
        ] {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
        let sql = format!(
            "INSERT INTO leads (email, email_key, status, attributes, origin, created_at, updated_at)
             SELECT 'lead' || i || '@c' || (i % 5000) || '.example', 'lead' || i || '@c' || (i % 5000) || '.example',
                    'new', '{{}}', 'import', now(), now() FROM generate_series(1, {LEADS}) AS i"
        );
        sqlx::query(&sql).execute(&mut c).await.unwrap();
        let sql = format!(
            "INSERT INTO activities (rep_id, kind, dedup_kind, occurred_at, source, source_id, subject, direction, details, created_at)
             SELECT 'rep' || lpad((i % {REPS})::text, 3, '0'), {KIND_CASE}, {KIND_CASE},
                    to_timestamp({first} + floor(i * {step})),
                    'bench', 'b' || i,
                    CASE WHEN (i / 100) % 40 = 0 THEN 'Proposal for Q1' ELSE 'Hello' END,
                    CASE WHEN (i / 100) % 10 < 3 OR (i / 100) % 10 = 8 THEN 'outbound' ELSE 'inbound' END,
                    CASE WHEN (i / 100) % 970 = 0 THEN '{{\"attachments\":[\"offer-proposal.pdf\"]}}'::jsonb ELSE '{{}}'::jsonb END,
                    now()
             FROM generate_series(0, {n} - 1) AS i"
        );
        sqlx::query(&sql).execute(&mut c).await.unwrap();
        sqlx::query(
            "INSERT INTO lead_first_outbound (lead_id, rep_id, activity_id, first_at)
             SELECT ROW_NUMBER() OVER (ORDER BY id), rep_id, id, occurred_at FROM activities
             WHERE direction = 'outbound' AND id % 37 = 0 LIMIT $1",
        )
        .bind(LEADS)
        .execute(&mut c)
        .await
        .unwrap();
        for s in [
            "CREATE INDEX activities_rep_time_kind ON activities(rep_id, occurred_at, kind)",
            "CREATE INDEX activities_rep_kind_time ON activities(rep_id, kind, occurred_at)",
            "CREATE INDEX activities_time ON activities(occurred_at)",
            "VACUUM ANALYZE activities",
            "VACUUM ANALYZE lead_first_outbound",
        ] {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
    }
    let count: i64 = store.status_counts().await.unwrap().activities;
    assert_eq!(count, n);
    println!("  generated {n} activities in {:.0} s", start.elapsed().as_secs_f64());
}

/// The baseline's own connection pool: the plainest query over the same rows, no code of
/// Rapport's in between.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const BASELINE: &str =
    "SELECT rep_id, kind, COUNT(*) FROM activities WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY rep_id, kind";

impl Raw {
    async fn connect(url: &str) -> Raw {
        if url.starts_with("sqlite:") {
            Raw::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Raw::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    /// Rows counted by the baseline query over `[from, to)`.
    async fn group_by(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let rows: Vec<(String, String, i64)> = match self {
            Raw::Sqlite(p) => sqlx::query_as(BASELINE).bind(from).bind(to).fetch_all(p).await.unwrap(),
            Raw::Postgres(p) => sqlx::query_as(BASELINE).bind(from).bind(to).fetch_all(p).await.unwrap(),
        };
        rows.iter().map(|r| r.2).sum()
    }
}

/// Median of `runs` timings of `f`, in milliseconds.
async fn median_ms<F, Fut>(runs: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let s = Instant::now();
        f().await;
        t.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

async fn bench(label: &str, url: &str, n: i64) {
    println!("{label}:");
    let config = config(url);
    let targets = targets(&config);
    let clock = ManualClock::new(now());
    let store = Store::connect(url, 4, Arc::new(clock)).await.unwrap();
    store.migrate().await.unwrap();
    store.sync_reps(&config).await.unwrap();
    generate(&store, url, n).await;

    let month_start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let month_end = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    // Warm the caches once for each query.
    let raw = Raw::connect(url).await;
    let month_rows = raw.group_by(month_start, month_end).await;
    let report = progress(
        &store,
        &config,
        &targets,
        PeriodKind::Month,
        now(),
        now(),
        &RepFilter::All,
    )
    .await
    .unwrap();
    assert_eq!(report.len(), REPS);
    assert!(report.iter().all(|r| r.goals.iter().any(|g| g.done > 0)));

    let runs = 5;
    let baseline = median_ms(runs, || async {
        raw.group_by(month_start, month_end).await;
    })
    .await;
    let month = median_ms(runs, || async {
        progress(
            &store,
            &config,
            &targets,
            PeriodKind::Month,
            now(),
            now(),
            &RepFilter::All,
        )
        .await
        .unwrap();
    })
    .await;
    let week = median_ms(runs, || async {
        progress(
            &store,
            &config,
            &targets,
            PeriodKind::Week,
            now(),
            now(),
            &RepFilter::All,
        )
        .await
        .unwrap();
    })
    .await;
    let one_rep = median_ms(runs, || async {
        progress(
            &store,
            &config,
            &targets,
            PeriodKind::Month,
            now(),
            now(),
            &RepFilter::Rep("rep042".into()),
        )
        .await
        .unwrap();
    })
    .await;
    println!("| backend | what | median of {runs} | ratio to baseline |\n|---|---|---|---|");
    println!(
        "| {label} | baseline: plain GROUP BY rep, kind over the month's range ({month_rows} rows) | {baseline:.1} ms | 1.00 |"
    );
    println!(
        "| {label} | report, month, 100 reps (7 goals, 4 zones) | {month:.1} ms | {:.2} |",
        month / baseline
    );
    println!(
        "| {label} | report, week, 100 reps | {week:.1} ms | {:.2} |",
        week / baseline
    );
    println!(
        "| {label} | report, month, one rep | {one_rep:.1} ms | {:.2} |",
        one_rep / baseline
    );
    std::io::stdout().flush().unwrap();
    store.close().await;
}

#[tokio::main]
async fn main() {
    let n = rows();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("SQLite", &sqlite_url, n).await;
    // A schema of its own on the server scripts/bench found or started.
    bench("PostgreSQL", &common::pg_schema_url().await, n).await;
}
