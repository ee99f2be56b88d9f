//! Shared test harness: a fresh store on SQLite (temp file) or PostgreSQL (own schema on the
//! server named by `RAPPORT_TEST_PG_URL`, started by `scripts/test`).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use rapport::clock::ManualClock;
use rapport::store::Store;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server tests use.
pub fn pg_admin_url() -> String {
    std::env::var("RAPPORT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

/// A store with its own database, and the clock it was given.
pub struct TestDb {
    pub store: Store,
    pub clock: ManualClock,
    /// The URL a separate process (the `rapport` binary) would use to reach the same data.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let db = TestDb::sqlite_unmigrated().await;
        db.store.migrate().await.expect("migrate sqlite");
        db
    }

    pub async fn postgres() -> TestDb {
        let db = TestDb::postgres_unmigrated().await;
        db.store.migrate().await.expect("migrate postgres");
        db
    }

    /// An empty SQLite database, for tests of the migrations themselves.
    pub async fn sqlite_unmigrated() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("rapport.db").display());
        let clock = ManualClock::new(t0());
        let store = Store::connect(&url, 4, Arc::new(clock.clone()))
            .await
            .expect("open sqlite");
        TestDb {
            store,
            clock,
            url,
            _dir: Some(dir),
        }
    }

    /// An empty PostgreSQL schema, for tests of the migrations themselves.
    pub async fn postgres_unmigrated() -> TestDb {
        let url = pg_schema_url().await;
        let clock = ManualClock::new(t0());
        let store = Store::connect(&url, 4, Arc::new(clock.clone()))
            .await
            .expect("open postgres");
        TestDb {
            store,
            clock,
            url,
            _dir: None,
        }
    }

    /// Runs `sql` (one statement) on a connection of the test's own: no code under test.
    pub async fn exec(&self, sql: &str) {
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            sqlx::query(sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            sqlx::query(sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            pool.close().await;
        }
    }

    /// The text column of every row `sql` returns, read on a connection of the test's own.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            let rows = sqlx::query_scalar(sql).fetch_all(&pool).await;
            pool.close().await;
            rows.unwrap_or_else(|e| panic!("{sql}: {e}"))
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            let rows = sqlx::query_scalar(sql).fetch_all(&pool).await;
            pool.close().await;
            rows.unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    }
}

/// Creates a fresh schema and returns a URL whose connections use it. Panics with what to do
/// when no PostgreSQL is reachable: a store test never passes by skipping.
pub async fn pg_schema_url() -> String {
    use sqlx::Connection;
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = pg_admin_url();
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {admin} ({e}).\n\
             Run the suite with scripts/test, which starts a throwaway server, or install \
             PostgreSQL (apt-get install postgresql) and set RAPPORT_TEST_PG_URL."
        ),
    };
    let schema = format!(
        "rt_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let sep = if admin.contains('?') { '&' } else { '?' };
    format!("{admin}{sep}options=-c%20search_path%3D{schema}")
}

/// Declares an async test body to be run once on SQLite and once on PostgreSQL:
/// `store_tests!(my_test);` with `async fn my_test(db: TestDb)`.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::TestDb::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::TestDb::postgres().await).await
            }
        }
    )*};
}

/// A config text for tests with two reps on example.com.
pub fn config_yaml(database_url: &str, extra: &str) -> String {
    format!(
        "database:\n  url: \"{database_url}\"\ninternal_domains: [example.com]\nreps:\n  - id: alice\n    name: Alice\n    email: alice@example.com\n    time_zone: Europe/Stockholm\n  - id: bob\n    name: Bob\n    email: bob@example.com\n{extra}"
    )
}

/// Writes a config into `dir` where alice owns `alice-imap` and `extra` (appended after bob's
/// entry) defines the mailboxes; loads it and stores its reps.
pub async fn imap_config(db: &TestDb, dir: &std::path::Path, extra: &str) -> rapport::config::Config {
    let yaml = config_yaml(&db.url, extra).replace(
        "    time_zone: Europe/Stockholm\n",
        "    time_zone: Europe/Stockholm\n    mailboxes: [alice-imap]\n",
    );
    let path = dir.join("rapport.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let config = rapport::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    db.store.sync_reps(&config).await.unwrap();
    config
}

pub fn test_config(database_url: &str) -> rapport::config::Config {
    rapport::config::Config::from_str(
        std::path::Path::new("/tmp/rapport-test.yaml"),
        &config_yaml(database_url, ""),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}
/// A small RFC 5322 message for IMAP and Maildir tests.
pub fn message(id: &str, from: &str, to: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}>\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there.\r\n"
    )
    .into_bytes()
}

/// How many activities of `kind` the store holds, all reps together.
pub async fn count_kind(store: &Store, kind: &str) -> i64 {
    store
        .count_by_rep_and_kind(None, None)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| c.count)
        .sum()
}

/// A lead at Acme (`acme.example`) owned by alice: the lead most tests exchange mail with.
pub fn acme_lead(email: &str) -> rapport::store::NewLead {
    rapport::store::NewLead {
        email: email.into(),
        name: None,
        company_name: Some("Acme".into()),
        company_domain: Some("acme.example".into()),
        owner_rep: Some("alice".into()),
        time_zone: None,
        status: None,
        attributes: Default::default(),
    }
}

/// Stores `leads`, every column.
pub async fn add_leads(store: &Store, leads: &[rapport::store::NewLead]) {
    store
        .upsert_leads(leads, rapport::store::LeadColumns::all())
        .await
        .unwrap();
}

/// A config with one calendar of alice's, `calendar` being its YAML entry (with `id: {id}`):
/// written as `dir/rapport.yaml`, its reps stored, and Sara Lind of Acme (alice's lead)
/// imported from `dir/leads.csv`, as `rapport run` does before syncing.
pub async fn calendar_config(db: &TestDb, dir: &std::path::Path, id: &str, calendar: &str) -> rapport::config::Config {
    std::fs::write(
        dir.join("leads.csv"),
        "email,name,company,owner\nsara@acme.example,Sara Lind,Acme,alice\n",
    )
    .unwrap();
    let yaml = config_yaml(&db.url, &format!("calendars:\n{calendar}")).replace(
        "    time_zone: Europe/Stockholm\n",
        &format!("    time_zone: Europe/Stockholm\n    calendars: [{id}]\n"),
    );
    let path = dir.join("rapport.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let config = rapport::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    db.store.sync_reps(&config).await.unwrap();
    rapport::leads::import_file(&db.store, &config, &dir.join("leads.csv"))
        .await
        .unwrap();
    config
}

/// A fresh task for the config's first calendar, with the leads stored now (as after a restart).
pub async fn first_calendar_task(config: &rapport::config::Config, store: &Store) -> rapport::daemon::CalendarTask {
    let rules = Arc::new(rapport::sources::mail::MatchRules::new(
        config,
        store.load_lead_index().await.unwrap(),
    ));
    rapport::daemon::calendar_tasks(config, store, &rules)
        .unwrap()
        .remove(0)
}

/// Activities per kind, every rep together.
pub async fn counts_by_kind(store: &Store) -> std::collections::BTreeMap<String, i64> {
    store
        .count_by_rep_and_kind(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.count))
        .collect()
}

/// `[(kind, n)]` as [`counts_by_kind`] gives it.
pub fn kinds(pairs: &[(&str, i64)]) -> std::collections::BTreeMap<String, i64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

pub mod caldav;
pub mod daemon;
pub mod dovecot;
pub mod idp;
pub mod smtp;
