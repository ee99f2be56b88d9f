//! Persistence on SQLite (embedded default) or PostgreSQL (teams, several daemons), chosen by
//! the database URL.
//!
//! Both backends run the same SQL wherever the dialects agree (sqlx's SQLite driver accepts
//! `$1` placeholders too); the [`with_pool!`] and [`with_tx!`] macros expand one body for each
//! backend, so a query is written once and type-checked twice. Where the dialects differ the
//! code branches on [`Backend`] for that fragment only.

mod activities;
mod checkpoint;
mod cursors;
mod health;
mod leads;
mod mail;
mod meetings;
mod ops;
mod reports;
mod sequences;
mod sqlite_alloc;
mod sqlite_bulk;

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use activities::{ActivityRow, KindCount};
pub use cursors::SyncCursor;
pub use health::{HealthState, SourceHealth};
pub use leads::{Lead, LeadColumns, NewLead, UpsertCounts};
pub use mail::{NewSeenMail, SeenMail};
pub use meetings::StoredMeeting;
pub use reports::{ActivityFilter, RepGroup, SentMail, SourceSync};
pub use sequences::{EnrollOutcome, Enrollment, LeadEvent, NewOutbox, OutboxRow, SendStats};

use crate::clock::SharedClock;
use crate::config::{Config, redact_url};
use checkpoint::Checkpoints;

/// Rows per multi-row INSERT in PostgreSQL's bulk writes: one statement per ingested batch of
/// mail (`sources::mail::imap::BATCH`), within its limit on bound parameters (65,535) at 11
/// columns. SQLite's are written by `sqlite_bulk`.
pub(crate) const ROWS_PER_INSERT: usize = 1000;

/// Which database engine a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pool {
    /// With the task that checkpoints its write-ahead log (see [`checkpoint`]).
    Sqlite(SqlitePool, Checkpoints),
    Postgres(PgPool),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) clock: SharedClock,
}

/// An open transaction on either backend.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>, Checkpoints),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$pool` bound to the concrete pool of the store's backend.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool, _) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the concrete connection of a [`Tx`].
macro_rules! with_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(t, _) => {
                let $conn = &mut **t;
                $body
            }
            $crate::store::Tx::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use {with_pool, with_tx};

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`). SQLite files are created on demand
    /// and run in WAL mode with a busy timeout and foreign keys on.
    pub async fn connect(url: &str, max_connections: u32, clock: SharedClock) -> Result<Store> {
        let pool = if url.starts_with("sqlite:") {
            sqlite_alloc::use_mimalloc();
            let opts = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid SQLite URL {url}"))?
                .create_if_missing(true)
                // Pages of 8 KiB for a new database (an existing one keeps its size: WAL mode
                // fixes it). Random Message-IDs put each message's index entries on pages all
                // over the indexes; larger pages split half as often.
                .page_size(8192)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // SQLite runs on a thread of its own that hands rows over through a bounded
                // channel (50 by default): a query returning more rows than that stalls until
                // the async side takes them, which may be busy with other work.
                .row_buffer_size(2 * ROWS_PER_INSERT)
                // Checkpoints run on a connection of their own, not inside commits.
                .pragma("wal_autocheckpoint", "0")
                // A page cache of 16 MiB per connection (SQLite's default is 2 MiB), allocated as
                // used. A batch of mail with real (random) Message-IDs changes pages all over the
                // indexes on them: past the cache, SQLite writes changed pages to the log in the
                // middle of a statement, and again when they change again (3% of the samples of
                // a profiled backfill; BENCHMARKS.md).
                .pragma("cache_size", "-16384")
                // Temporary files in memory. Every multi-row statement inside a transaction keeps
                // the original of each page it changes (to undo just that statement), in memory
                // up to 64 KiB and then in a temporary file; with random Message-IDs a 100-row
                // statement changes a hundred pages or more, and writing them out took 7% of the
                // samples of a profiled backfill (BENCHMARKS.md).
                .pragma("temp_store", "memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                // An embedded database has no connection to lose: checking one before each
                // use only costs a round trip to its thread, which a busy machine may not
                // schedule for a millisecond or more (measured in every mail batch's BEGIN).
                .test_before_acquire(false)
                .connect_with(opts.clone())
                .await
                .with_context(|| format!("opening SQLite database {url}"))?;
            let checkpoints = Checkpoints::start(&opts)
                .await
                .with_context(|| format!("opening SQLite database {url}"))?;
            Pool::Sqlite(pool, checkpoints)
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .with_context(|| format!("connecting to PostgreSQL at {}", redact_url(url)))?;
            Pool::Postgres(pool)
        };
        Ok(Store { pool, clock })
    }

    /// Connects with the settings of a config file.
    pub async fn open(config: &Config, clock: SharedClock) -> Result<Store> {
        Store::connect(&config.database.url, config.database.max_connections, clock).await
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(..) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Applies the embedded migrations of this backend that are not applied yet, and fills in
    /// what a migration left to code (see [`Store::fill_message_keys`]).
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p, _) => sqlx::migrate!("./migrations/sqlite").run(p).await,
            Pool::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
        }
        .context("applying database migrations")?;
        self.fill_message_keys().await
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match &self.pool {
            // Every transaction here writes: take SQLite's write lock at BEGIN (waiting up to the
            // busy timeout) rather than failing when a deferred read must upgrade to a write
            // after another connection committed.
            Pool::Sqlite(p, checkpoints) => Tx::Sqlite(
                p.begin_with("BEGIN IMMEDIATE")
                    .await
                    .context("starting a transaction")?,
                checkpoints.clone(),
            ),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await.context("starting a transaction")?),
        })
    }

    /// A transaction that moves a source's cursor together with what it read: losing it in a
    /// crash loses nothing (the source is read again from the cursor before it), so PostgreSQL
    /// may acknowledge its commit before the WAL reaches the disk (`synchronous_commit = off`;
    /// it is still atomic and written in order, within a fraction of a second). SQLite's WAL
    /// with `synchronous = NORMAL` already behaves that way for every transaction. The one
    /// window: other sessions see the commit at once, so if the PostgreSQL server itself
    /// crashes within that fraction of a second, what they acted on (a reply that stopped a
    /// sequence, say) is read again from the mailbox after the restart.
    pub async fn begin_replayable(&self) -> Result<Tx> {
        let mut tx = self.begin().await?;
        if let Tx::Postgres(t) = &mut tx {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut **t)
                .await
                .context("starting a transaction")?;
        }
        Ok(tx)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .context("database did not answer")?;
        Ok(())
    }

    /// Writes the reps of the config to the `reps` table; reps no longer configured are kept
    /// (their activities still count in history) but marked inactive.
    pub async fn sync_reps(&self, config: &Config) -> Result<()> {
        let now = self.now();
        let mut tx = self.begin().await?;
        with_tx!(&mut tx, |conn| {
            sqlx::query("UPDATE reps SET active = $1")
                .bind(false)
                .execute(&mut *conn)
                .await?;
            for rep in &config.reps {
                sqlx::query(
                    "INSERT INTO reps (id, name, email, time_zone, team, active, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email,
                        time_zone = excluded.time_zone, team = excluded.team,
                        active = excluded.active, updated_at = excluded.updated_at",
                )
                .bind(&rep.id)
                .bind(&rep.name)
                .bind(&rep.email)
                .bind(rep.time_zone.name())
                .bind(&rep.team)
                .bind(true)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            Ok::<_, sqlx::Error>(())
        })
        .context("writing reps")?;
        tx.commit().await
    }

    /// Closes the pool, waiting for connections to be returned (on SQLite, then the checkpoint
    /// connection: the last to close copies the log into the database file and removes it).
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await);
        if let Pool::Sqlite(_, checkpoints) = &self.pool {
            checkpoints.close().await;
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t, checkpoints) => {
                t.commit().await.context("committing a transaction")?;
                checkpoints.committed();
                Ok(())
            }
            Tx::Postgres(t) => t.commit().await.context("committing a transaction"),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(..) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Counts shown by `rapport status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub leads: i64,
    pub companies: i64,
    pub activities: i64,
    pub outbox: Vec<(String, i64)>,
    pub enrollments: Vec<(String, i64)>,
}

impl Store {
    pub async fn status_counts(&self) -> Result<StatusCounts> {
        with_pool!(self, |pool| async {
            let leads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads").fetch_one(pool).await?;
            let companies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM companies")
                .fetch_one(pool)
                .await?;
            let activities: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM activities")
                .fetch_one(pool)
                .await?;
            let outbox: Vec<(String, i64)> =
                sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state ORDER BY state")
                    .fetch_all(pool)
                    .await?;
            let enrollments: Vec<(String, i64)> =
                sqlx::query_as("SELECT state, COUNT(*) FROM enrollments GROUP BY state ORDER BY state")
                    .fetch_all(pool)
                    .await?;
            Ok::<_, sqlx::Error>(StatusCounts {
                leads,
                companies,
                activities,
                outbox,
                enrollments,
            })
        }
        .await)
        .context("reading status counts")
    }
}
