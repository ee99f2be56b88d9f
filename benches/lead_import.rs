//! Lead import throughput on SQLite and PostgreSQL, against a raw baseline measured in the
//! same run: SQLite — a plain multi-row INSERT of the same rows in one transaction;
//! PostgreSQL — COPY of the same rows. Run with `scripts/bench lead_import`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use rapport::clock::SystemClock;
use rapport::leads::{ImportRules, parse_csv};
use rapport::matcher::DomainRules;
use rapport::store::Store;

const ROWS: usize = 100_000;

fn csv_text() -> String {
    let mut s = String::from("email,first_name,last_name,company,owner,industry\n");
    for i in 0..ROWS {
        let owner = if i % 2 == 0 { "alice" } else { "bob" };
        s.push_str(&format!(
            "lead{i}@company{}.example,First{i},Last{i},Company {},{owner},industry{}\n",
            i % 500,
            i % 500,
            i % 7
        ));
    }
    s
}

async fn raw_baseline(url: &str, csv: &str) -> f64 {
    use sqlx::Connection;
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let start;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(
            "CREATE TABLE raw_leads (email TEXT, first TEXT, last TEXT, company TEXT, owner TEXT, industry TEXT)",
        )
        .execute(&mut c)
        .await
        .unwrap();
        start = Instant::now();
        let mut tx = c.begin().await.unwrap();
        for chunk in rows.chunks(1000) {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO raw_leads ");
            qb.push_values(chunk, |mut b, r| {
                for v in r {
                    b.push_bind(*v);
                }
            });
            qb.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(
            "CREATE TABLE raw_leads (email TEXT, first TEXT, last TEXT, company TEXT, owner TEXT, industry TEXT)",
        )
        .execute(&mut c)
        .await
        .unwrap();
        start = Instant::now();
        let mut copy = c
            .copy_in_raw("COPY raw_leads FROM STDIN (FORMAT csv, HEADER true)")
            .await
            .unwrap();
        copy.send(csv.as_bytes()).await.unwrap();
        copy.finish().await.unwrap();
    }
    ROWS as f64 / start.elapsed().as_secs_f64()
}

async fn bench(label: &str, url: &str, csv: &str) {
    let config = rapport::config::Config::from_str(
        std::path::Path::new("/tmp/bench.yaml"),
        &format!(
            "database: {{url: \"{url}\"}}\ninternal_domains: [example.com]\nreps:\n  - {{id: alice, name: A, email: alice@example.com}}\n  - {{id: bob, name: B, email: bob@example.com}}\n"
        ),
    )
    .unwrap();
    let store = Store::connect(url, 4, Arc::new(SystemClock)).await.unwrap();
    store.migrate().await.unwrap();
    store.sync_reps(&config).await.unwrap();
    let domains = DomainRules::from_config(&config);
    let rules = ImportRules::from_config(&config, &domains);

    let baseline = raw_baseline(url, csv).await;
    let mut results = Vec::new();
    for run in ["first (all new)", "second (all unchanged)"] {
        let start = Instant::now();
        let parsed = parse_csv(csv.as_bytes(), &rules).unwrap();
        let counts = store.upsert_leads(&parsed.leads, parsed.columns).await.unwrap();
        let rate = ROWS as f64 / start.elapsed().as_secs_f64();
        assert_eq!(counts.inserted + counts.updated + counts.unchanged, ROWS as u64);
        results.push((run, rate));
    }
    println!("| {label} | raw baseline | {baseline:>9.0} rows/s | 1.00 |");
    for (run, rate) in results {
        println!(
            "| {label} | rapport import, {run} | {rate:>9.0} rows/s | {:.2} |",
            rate / baseline
        );
    }
    std::io::stdout().flush().unwrap();
}

#[tokio::main]
async fn main() {
    let csv = csv_text();
    let start = Instant::now();
    let domains = DomainRules::new(&["example.com".into()], &[], &[]);
    let rules = ImportRules {
        domains: &domains,
        rep_ids: ["alice", "bob"].into(),
    };
    let parsed = parse_csv(csv.as_bytes(), &rules).unwrap();
    assert_eq!(parsed.leads.len(), ROWS);
    println!(
        "CSV parsing alone: {:.0} rows/s",
        ROWS as f64 / start.elapsed().as_secs_f64()
    );
    println!("\n| backend | what | rate | ratio to raw |\n|---|---|---|---|");

    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("SQLite", &sqlite_url, &csv).await;

    // A schema of its own on the server scripts/bench found or started; leftovers are dropped
    // by the next scripts/test or scripts/bench run.
    bench("PostgreSQL", &common::pg_schema_url().await, &csv).await;
}
