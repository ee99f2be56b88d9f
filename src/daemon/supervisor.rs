//! Supervision of the daemon's long-running tasks (mailboxes, calendars, the sequence sender,
//! the HTTP listener): each runs in its own tokio task with its own cancellation token, so one
//! can be stopped by name (a mailbox removed on reload) while the others go on; a panic
//! restarts the task with backoff; shutdown cancels them all and waits up to a deadline.
//!
//! Every task also beats a [`Heartbeats`] entry while its future is being polled: the systemd
//! watchdog (see `notify.rs`) is pinged only while every live task beats, so a task that
//! blocks its worker thread (a synchronous deadlock, a runaway loop without an `.await`)
//! stops the pings and systemd restarts the daemon.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::sources::Backoff;

/// How often a running task beats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A long-running loop the daemon supervises: a mailbox, a calendar, the sequence sender, the
/// HTTP listener. `run` returns when `cancel` fires or when the task gives up for good (an
/// authentication failure); a panic restarts it with backoff.
///
/// On shutdown `cancel` fires and the task has the configured deadline (default 10 s) to
/// finish what it is doing (store the mail already read with its cursor, complete an SMTP
/// transaction and record it) and return; after the deadline it is aborted. A task therefore
/// only needs to check `cancel` between units of work and before waiting.
pub trait Supervised: Send + Sync + 'static {
    /// Names the task in logs, e.g. `mailbox alice-imap`. Unique among running tasks: reload
    /// stops and restarts tasks by name.
    fn name(&self) -> String;
    /// Runs until `cancel` fires or the task stops for good.
    fn run(self: Arc<Self>, cancel: CancellationToken) -> futures_util::future::BoxFuture<'static, ()>;
}

/// The last beat of every running task.
#[derive(Clone, Default)]
pub struct Heartbeats {
    beats: Arc<Mutex<HashMap<u64, (String, Instant)>>>,
    next_id: Arc<AtomicU64>,
}

impl Heartbeats {
    /// Adds a task; it counts as alive until the returned [`Beat`] is dropped.
    pub fn register(&self, name: String) -> Beat {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (name, Instant::now()));
        Beat {
            heartbeats: self.clone(),
            id,
        }
    }

    /// Names of the tasks whose last beat is older than `max_age` at `now`.
    pub fn stale(&self, now: Instant, max_age: Duration) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock()
            .values()
            .filter(|(_, at)| now.saturating_duration_since(*at) > max_age)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// How many tasks are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, Instant)>> {
        // A panic while holding this lock cannot leave the map inconsistent: use it anyway.
        self.beats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One task's entry in [`Heartbeats`]; removed when dropped (the task ended or panicked).
pub struct Beat {
    heartbeats: Heartbeats,
    id: u64,
}

impl Beat {
    /// Records that the task is alive now.
    pub fn beat_at(&self, at: Instant) {
        if let Some(entry) = self.heartbeats.lock().get_mut(&self.id) {
            entry.1 = at;
        }
    }

    /// Beats every [`HEARTBEAT_EVERY`], forever. Raced against the task's own future inside
    /// the same tokio task, so it beats only while that task is being polled.
    async fn keep_beating(&self) {
        loop {
            self.beat_at(Instant::now());
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        self.heartbeats.lock().remove(&self.id);
    }
}

struct Entry {
    task: Arc<dyn Supervised>,
    /// Cancels this task only (a child of the daemon's token).
    token: CancellationToken,
    /// Resolves (with an error) when the task's future is gone: finished, panicked or aborted.
    done: Option<oneshot::Receiver<()>>,
    abort: AbortHandle,
}

/// Starts, restarts (after a panic, with backoff) and stops supervised tasks.
#[derive(Default)]
pub struct Supervisor {
    set: JoinSet<()>,
    running: HashMap<tokio::task::Id, Entry>,
    backoff: HashMap<String, Backoff>,
    heartbeats: Heartbeats,
}

impl Supervisor {
    /// The heartbeats of the tasks this supervisor runs, for the watchdog.
    pub fn heartbeats(&self) -> Heartbeats {
        self.heartbeats.clone()
    }

    /// Starts `task` now; it stops when `cancel` (or its own token) fires.
    pub fn start(&mut self, task: Arc<dyn Supervised>, cancel: &CancellationToken) {
        self.spawn(task, cancel, Duration::ZERO);
    }

    fn spawn(&mut self, task: Arc<dyn Supervised>, cancel: &CancellationToken, delay: Duration) {
        let token = cancel.child_token();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let beat = self.heartbeats.register(task.name());
        let run = task.clone();
        let task_token = token.clone();
        let abort = self.set.spawn(async move {
            // Dropped when this future ends or is dropped (panic, abort): wakes `stop_task`.
            let _done = done_tx;
            let work = async move {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = task_token.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                run.run(task_token).await
            };
            tokio::select! {
                _ = work => {}
                _ = beat.keep_beating() => {}
            }
        });
        self.running.insert(
            abort.id(),
            Entry {
                task,
                token,
                done: Some(done_rx),
                abort,
            },
        );
    }

    /// The names of the running tasks, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.running.values().map(|e| e.task.name()).collect();
        v.sort();
        v
    }

    /// Whether a task of that name is running (or waiting to be restarted).
    pub fn is_running(&self, name: &str) -> bool {
        self.running.values().any(|e| e.task.name() == name)
    }

    /// Stops the task named `name`: cancels it, waits up to `deadline` for it to finish its
    /// work in hand, then aborts it. Returns false when no such task runs. It is not restarted.
    pub async fn stop_task(&mut self, name: &str, deadline: Duration) -> bool {
        let Some(id) = self
            .running
            .iter()
            .find(|(_, e)| e.task.name() == name)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let Some(mut entry) = self.running.remove(&id) else {
            return false;
        };
        entry.token.cancel();
        if let Some(done) = entry.done.take()
            && tokio::time::timeout(deadline, done).await.is_err()
        {
            warn!(task = %name, "task did not stop within {deadline:?}; abandoning it");
            entry.abort.abort();
        }
        info!(task = %name, "task stopped");
        true
    }

    /// Waits until a task ends and restarts it (after a backoff, without blocking) if it
    /// panicked. Never completes while no task runs.
    pub async fn next_exit(&mut self, cancel: &CancellationToken) {
        let Some(done) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (task_id, panicked) = match done {
            Ok((id, ())) => (id, false),
            Err(e) => (e.id(), e.is_panic()),
        };
        let Some(entry) = self.running.remove(&task_id) else {
            return;
        };
        if !panicked || cancel.is_cancelled() {
            return;
        }
        let name = entry.task.name();
        let delay = self.backoff.entry(name.clone()).or_default().next_delay();
        error!(task = %name, restart_in = ?delay, "task panicked; restarting");
        self.spawn(entry.task, cancel, delay);
    }

    /// Keeps tasks running (restarting the ones that panic) until `cancel` fires.
    pub async fn supervise(&mut self, cancel: &CancellationToken) {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = async { loop { self.next_exit(cancel).await } } => {}
        }
    }

    /// Waits up to `deadline` for every task to finish after cancellation, then aborts the rest
    /// and names them.
    pub async fn stop(&mut self, deadline: Duration) {
        for e in self.running.values() {
            e.token.cancel();
        }
        let running = &mut self.running;
        let set = &mut self.set;
        let all_done = async {
            while let Some(done) = set.join_next_with_id().await {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                running.remove(&id);
            }
        };
        if tokio::time::timeout(deadline, all_done).await.is_err() {
            let mut names: Vec<String> = self.running.values().map(|e| e.task.name()).collect();
            names.sort();
            warn!(still_running = ?names, "shutdown deadline passed; abandoning these tasks");
            self.set.abort_all();
            while self.set.join_next().await.is_some() {}
        }
        self.running.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_that_stops_beating_is_stale_and_a_dropped_one_is_gone() {
        let hb = Heartbeats::default();
        let t0 = Instant::now();
        let a = hb.register("mailbox a".into());
        let b = hb.register("mailbox b".into());
        a.beat_at(t0 + Duration::from_secs(10));
        b.beat_at(t0 + Duration::from_secs(2));
        assert_eq!(
            hb.stale(t0 + Duration::from_secs(11), Duration::from_secs(5)),
            ["mailbox b"]
        );
        drop(b);
        assert!(
            hb.stale(t0 + Duration::from_secs(11), Duration::from_secs(5))
                .is_empty()
        );
        assert_eq!(hb.len(), 1);
        drop(a);
        assert!(hb.is_empty());
    }

    struct Sleeper(&'static str);

    impl Supervised for Sleeper {
        fn name(&self) -> String {
            self.0.to_owned()
        }
        fn run(self: Arc<Self>, cancel: CancellationToken) -> futures_util::future::BoxFuture<'static, ()> {
            Box::pin(async move { cancel.cancelled().await })
        }
    }

    /// Ignores cancellation: what the deadline is for.
    struct Stubborn;

    impl Supervised for Stubborn {
        fn name(&self) -> String {
            "stubborn".into()
        }
        fn run(self: Arc<Self>, _cancel: CancellationToken) -> futures_util::future::BoxFuture<'static, ()> {
            Box::pin(async { std::future::pending::<()>().await })
        }
    }

    #[tokio::test]
    async fn a_task_that_ignores_cancellation_is_aborted_at_the_deadline() {
        let cancel = CancellationToken::new();
        let mut sup = Supervisor::default();
        sup.start(Arc::new(Stubborn), &cancel);
        sup.start(Arc::new(Sleeper("mailbox a")), &cancel);
        assert!(sup.stop_task("stubborn", Duration::from_millis(50)).await);
        assert_eq!(sup.names(), ["mailbox a"]);
        sup.start(Arc::new(Stubborn), &cancel);
        cancel.cancel();
        sup.stop(Duration::from_millis(50)).await;
        assert!(sup.names().is_empty());
        assert!(sup.heartbeats().is_empty(), "aborted tasks no longer count as alive");
    }

    #[tokio::test]
    async fn one_task_stops_by_name_and_the_others_keep_running() {
        let cancel = CancellationToken::new();
        let mut sup = Supervisor::default();
        sup.start(Arc::new(Sleeper("mailbox a")), &cancel);
        sup.start(Arc::new(Sleeper("mailbox b")), &cancel);
        assert_eq!(sup.names(), ["mailbox a", "mailbox b"]);
        assert!(sup.stop_task("mailbox a", Duration::from_secs(10)).await);
        assert!(!sup.stop_task("mailbox a", Duration::from_secs(10)).await);
        assert_eq!(sup.names(), ["mailbox b"]);
        assert_eq!(sup.heartbeats().len(), 1, "the stopped task no longer beats");
        sup.stop(Duration::from_secs(10)).await;
        assert!(sup.names().is_empty());
        assert!(sup.heartbeats().is_empty());
    }
}
