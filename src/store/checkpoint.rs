//! SQLite's WAL checkpoints, run on a connection of their own instead of inside commits.
//!
//! By default SQLite checkpoints (copies the pages the write-ahead log holds back into the
//! database file, and syncs both) inside the commit that pushes the log past 1,000 pages. The
//! writer that commits waits for it: in the mail backfill that was every fourth batch, while
//! the other CPU often had nothing to do. Here the pool's connections never checkpoint
//! (`wal_autocheckpoint = 0`); after each commit this task is woken and checkpoints on its own
//! connection, on another thread, while the writer goes on with its next transaction. A
//! PASSIVE checkpoint never waits for (nor blocks) readers or the writer; it copies what it
//! can. Checkpoints are at least [`MIN_INTERVAL`] apart. BENCHMARKS.md has the measurements.
//!
//! The log starts over from its beginning only when a transaction begins after a checkpoint
//! copied all of it. Under a steady stream of commits a passive checkpoint may always be a
//! little behind, so once the log holds more than [`RESTART_FRAMES`] pages, the checkpoint is
//! a RESTART one: it waits (up to the busy timeout) for the writer in progress, holds new ones
//! back while it copies the rest, and the next transaction writes from the log's start again.
//! That bounds the log's size.
//!
//! Writes made outside a [`super::Tx`] (single statements on the pool) do not wake the task:
//! their pages are copied by the next commit's checkpoint, or within [`IDLE_CHECKPOINT`].

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Log size (in pages of 4 KiB) past which a checkpoint makes the log start over.
const RESTART_FRAMES: i64 = 8_192;

/// Shortest time between two checkpoints. A checkpoint copies every page the log holds (the
/// latest version of each) and syncs the database file: one every few batches of a backfill
/// copies a page that several batches wrote only once (measured: see BENCHMARKS.md).
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Longest time between checkpoints when nothing wakes the task.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(30);

enum Wake {
    /// A transaction committed, or the task was idle for [`IDLE_CHECKPOINT`].
    Checkpoint,
    /// The store is closing: close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// The handle of the checkpoint task (every SQLite transaction holds one, to wake it after its
/// commit); cheap to clone. The task ends when the store is closed or every handle is dropped.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    wake: mpsc::Sender<Wake>,
}

impl Checkpoints {
    /// Opens the checkpoint connection (to the database the pool behind `opts` opened) and
    /// starts the task.
    pub(crate) async fn start(opts: &SqliteConnectOptions) -> Result<Checkpoints> {
        let conn = opts
            .clone()
            .connect()
            .await
            .context("opening the SQLite checkpoint connection")?;
        // One pending wake-up is enough: a checkpoint copies whatever was committed before it.
        let (wake, rx) = mpsc::channel(1);
        tokio::spawn(run(conn, rx));
        Ok(Checkpoints { wake })
    }

    /// Called after each commit.
    pub(crate) fn committed(&self) {
        // Full: a checkpoint is due already. Closed: the store is closing.
        let _ = self.wake.try_send(Wake::Checkpoint);
    }

    /// Closes the checkpoint connection, after the checkpoint in progress.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.wake.send(Wake::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

async fn run(mut conn: SqliteConnection, mut wake: mpsc::Receiver<Wake>) {
    loop {
        let w = match tokio::time::timeout(IDLE_CHECKPOINT, wake.recv()).await {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(_) => Wake::Checkpoint,
        };
        match w {
            Wake::Checkpoint => {
                if let Err(e) = checkpoint(&mut conn, RESTART_FRAMES).await {
                    warn!(error = %format!("{e:#}"), "SQLite checkpoint failed (retried after the next commit)");
                }
                // Commits arriving meanwhile wait for the next checkpoint (one wake-up is kept).
                tokio::time::sleep(MIN_INTERVAL).await;
            }
            Wake::Close(done) => {
                let _ = conn.close().await;
                let _ = done.send(());
                return;
            }
        }
    }
}

/// One checkpoint, restarting the log when it holds more than `restart_frames` pages; returns
/// the pages it held.
async fn checkpoint(conn: &mut SqliteConnection, restart_frames: i64) -> Result<i64> {
    let (_, log, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await
        .context("PRAGMA wal_checkpoint(PASSIVE)")?;
    if log > restart_frames {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
            .fetch_one(&mut *conn)
            .await
            .context("PRAGMA wal_checkpoint(RESTART)")?;
        anyhow::ensure!(busy == 0, "the log of {log} pages could not be restarted (busy)");
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::{LeadColumns, NewLead, Store, with_pool};
    use std::sync::Arc;

    fn leads(n: usize, tag: &str) -> Vec<NewLead> {
        (0..n)
            .map(|i| NewLead {
                email: format!("lead{i}-{tag}@company{}.example", i % 20),
                name: Some(format!("Lead {i} with a name long enough to fill pages")),
                company_name: None,
                company_domain: Some(format!("company{}.example", i % 20)),
                owner_rep: None,
                time_zone: None,
                status: None,
                attributes: Default::default(),
            })
            .collect()
    }

    async fn pragma(store: &Store, sql: &str) -> i64 {
        with_pool!(store, |pool| sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_are_checkpointed_off_the_writer_and_close_removes_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rapport.db");
        let store = Store::connect(&format!("sqlite://{}", db.display()), 4, Arc::new(SystemClock))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        assert_eq!(
            pragma(&store, "PRAGMA wal_autocheckpoint").await,
            0,
            "pool connections leave checkpoints to the task"
        );
        let before = std::fs::metadata(&db).unwrap().len();
        // Upserting leads commits through a transaction, which wakes the task.
        store
            .upsert_leads(&leads(3_000, "a"), LeadColumns::all())
            .await
            .unwrap();
        // Only a checkpoint writes pages into the database file itself; wait for it (the
        // bound is generous: the test is about whether it happens, not how fast).
        let mut grown = false;
        for _ in 0..600 {
            if std::fs::metadata(&db).unwrap().len() > before + 100_000 {
                grown = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(grown, "the commit was never checkpointed into the database file");
        store.close().await;
        let wal = dir.path().join("rapport.db-wal");
        assert!(
            !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
            "closing the store leaves the log copied and removed"
        );
        // Everything is in the database file: it opens and reads without the log.
        let store = Store::connect(&format!("sqlite://{}", db.display()), 1, Arc::new(SystemClock))
            .await
            .unwrap();
        assert_eq!(store.count_leads().await.unwrap(), 3_000);
        store.close().await;
    }

    /// Inserts `n` rows of about 200 bytes in one transaction.
    async fn write(conn: &mut SqliteConnection, n: i64) {
        sqlx::query(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1)
             INSERT INTO t (v) SELECT printf('%.200c', 'x') FROM s",
        )
        .bind(n)
        .execute(&mut *conn)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_log_that_readers_kept_growing_is_restarted() {
        // SQLite is opened here without `Store::connect`: its allocator must be set first (by
        // whichever test gets there first), not while another test initialises SQLite.
        super::super::sqlite_alloc::use_mimalloc();
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let (mut writer, mut reader, mut ckpt) = (
            opts.clone().connect().await.unwrap(),
            opts.clone().connect().await.unwrap(),
            opts.connect().await.unwrap(),
        );
        sqlx::query("CREATE TABLE t (v TEXT)")
            .execute(&mut writer)
            .await
            .unwrap();
        write(&mut writer, 2_000).await;
        // A reader in the middle of a transaction keeps the checkpoint from copying what was
        // committed after its snapshot, so the next writer cannot start the log over.
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        sqlx::query("SELECT count(*) FROM t")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        write(&mut writer, 2_000).await;
        let held = checkpoint(&mut ckpt, i64::MAX).await.unwrap();
        sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
        write(&mut writer, 10).await;
        let grown = checkpoint(&mut ckpt, i64::MAX).await.unwrap();
        assert!(held > 100 && grown > held, "the log grew from {held} to {grown} pages");
        // Past the limit the checkpoint restarts the log: the next write starts it over.
        assert_eq!(checkpoint(&mut ckpt, 100).await.unwrap(), grown);
        write(&mut writer, 10).await;
        let restarted = checkpoint(&mut ckpt, i64::MAX).await.unwrap();
        assert!(restarted < 10, "after the restart the log holds {restarted} pages");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        assert_eq!(rows, 4_020);
    }
}
