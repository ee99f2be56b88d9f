//! Wires the parts together and supervises them: open the store, import seed leads, start
//! one task per mailbox, stop cleanly within the shutdown deadline. No business logic here.

mod mailbox;

use std::collections::HashMap;
use std::fmt::Write;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use mailbox::MailboxTask;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::leads;
use crate::report;
use crate::sources::Backoff;
use crate::sources::mail::{FetchedMail, Ingestor, MailHeaders, MatchRules};
use crate::store::Store;

/// How `run` behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Sync every source once, print a summary, return.
    pub once: bool,
}

/// Opens the store, applies migrations and writes the configured reps.
pub async fn prepare_store(config: &Config, clock: SharedClock) -> Result<Store> {
    let store = Store::open(config, clock).await?;
    store.migrate().await?;
    store.sync_reps(config).await?;
    Ok(store)
}

/// One task per configured mailbox, sharing the matching rules.
pub async fn mailbox_tasks(config: &Config, store: &Store) -> Result<(Vec<MailboxTask>, Arc<MatchRules>)> {
    let rules = Arc::new(MatchRules::new(config, store.load_lead_index().await?));
    let mut tasks = Vec::new();
    for mb in &config.mailboxes {
        let rep = config
            .mailbox_owner(&mb.id)
            .with_context(|| format!("mailbox {} belongs to no rep", mb.id))?;
        tasks.push(MailboxTask {
            config: mb.clone(),
            ingestor: Arc::new(Ingestor::new(store.clone(), &mb.id, rep, rules.clone())),
        });
    }
    Ok((tasks, rules))
}

/// Matches mail seen earlier without a lead against the leads known now, so that importing a
/// lead links the mail already exchanged with it. Returns how many messages now count.
pub async fn rematch_seen_mail(config: &Config, store: &Store) -> Result<usize> {
    let (tasks, _) = mailbox_tasks(config, store).await?;
    let mut counted = 0;
    for t in &tasks {
        let rows = store.rematch_candidates(&t.config.id).await?;
        let batch: Vec<FetchedMail> = rows
            .into_iter()
            .filter_map(|r| {
                let headers: MailHeaders = serde_json::from_value(r.headers?.0).ok()?;
                Some(FetchedMail {
                    folder: r.folder,
                    item_key: r.item_key,
                    headers: Some(headers),
                    internal_date: r.occurred_at,
                })
            })
            .collect();
        for chunk in batch.chunks(500) {
            counted += t.ingestor.ingest(chunk, None).await?.counted;
        }
    }
    if counted > 0 {
        info!(messages = counted, "mail seen earlier now matched to leads");
    }
    Ok(counted)
}

async fn import_lead_files(config: &Config, store: &Store) -> Result<()> {
    for file in &config.lead_files {
        let report = leads::import_file(store, config, file).await?;
        for r in &report.rejected {
            warn!(file = %file.display(), "lead not imported: {r}");
        }
        info!(
            file = %file.display(),
            inserted = report.counts.inserted,
            updated = report.counts.updated,
            unchanged = report.counts.unchanged,
            rejected = report.rejected.len(),
            "leads imported"
        );
    }
    Ok(())
}

/// Runs the daemon until `shutdown` completes (or, with `once`, until one pass is done).
pub async fn run(
    config: Config,
    clock: SharedClock,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let store = prepare_store(&config, clock).await?;
    import_lead_files(&config, &store).await?;
    rematch_seen_mail(&config, &store).await?;
    let (tasks, rules) = mailbox_tasks(&config, &store).await?;
    let senders = crate::sequences::sender::start_senders(&config, &store).await?;

    if options.once {
        for t in &tasks {
            match t.sync_once().await {
                Ok(stats) => t.ingestor.synced(t.kind(), &stats).await,
                Err(e) => {
                    error!(mailbox = %t.config.id, "sync failed: {e:#}");
                    let state = if e.is_auth() {
                        crate::store::HealthState::AuthFailed
                    } else {
                        crate::store::HealthState::Failed
                    };
                    store
                        .set_health(&t.config.id, t.kind(), state, Some(&format!("{e:#}")))
                        .await?;
                }
            }
        }
        crate::sequences::sender::send_due_once(&senders).await;
        let counts = store.count_by_rep_and_kind(None, None).await?;
        print!("{}", report::summary_table(&config, &counts));
        store.close().await;
        return Ok(());
    }

    let cancel = CancellationToken::new();
    let mut supervisor = Supervisor::default();
    for t in tasks {
        supervisor.start(Arc::new(t), &cancel);
    }
    for s in senders {
        supervisor.start(s, &cancel);
    }
    let refresher = tokio::spawn(refresh_index(
        config.clone(),
        store.clone(),
        rules,
        cancel.child_token(),
    ));
    info!(
        reps = config.reps.len(),
        mailboxes = config.mailboxes.len(),
        "rapport is running"
    );
    tokio::select! {
        _ = shutdown => {}
        _ = supervisor.supervise(&cancel) => {}
    }
    info!("shutting down");
    cancel.cancel();
    supervisor.stop(config.shutdown_timeout).await;
    let _ = refresher.await;
    store.close().await;
    Ok(())
}

/// Reloads the lead index when leads change outside this process (an import from the CLI).
async fn refresh_index(config: Config, store: Store, rules: Arc<MatchRules>, cancel: CancellationToken) {
    let mut last = store.leads_version().await.ok();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        match store.leads_version().await {
            Ok(v) if Some(&v) != last.as_ref() => match store.load_lead_index().await {
                Ok(index) => {
                    info!(leads = index.lead_count(), "lead index reloaded");
                    *rules.index.write().await = index;
                    last = Some(v);
                    if let Err(e) = rematch_seen_mail(&config, &store).await {
                        warn!("cannot match earlier mail to the new leads: {e:#}");
                    }
                }
                Err(e) => warn!("cannot reload leads: {e:#}"),
            },
            Ok(_) => {}
            Err(e) => warn!("cannot check leads: {e:#}"),
        }
    }
}

/// A long-running loop the daemon supervises: a mailbox, a calendar, the sequence sender, the
/// HTTP listener. `run` returns when `cancel` fires or when the task gives up for good (an
/// authentication failure); a panic restarts it with backoff.
pub trait Supervised: Send + Sync + 'static {
    /// Names the task in logs, e.g. `mailbox alice-imap`.
    fn name(&self) -> String;
    /// Runs until `cancel` fires or the task stops for good.
    fn run(self: Arc<Self>, cancel: CancellationToken) -> futures_util::future::BoxFuture<'static, ()>;
}

/// Restarts tasks that die unexpectedly (a panic), with backoff, and stops them all within a
/// deadline on shutdown.
#[derive(Default)]
pub struct Supervisor {
    set: JoinSet<()>,
    running: HashMap<tokio::task::Id, Arc<dyn Supervised>>,
    backoff: HashMap<String, Backoff>,
}

impl Supervisor {
    pub fn start(&mut self, task: Arc<dyn Supervised>, cancel: &CancellationToken) {
        let handle = self.set.spawn(task.clone().run(cancel.child_token()));
        self.running.insert(handle.id(), task);
    }

    /// Waits for tasks to end; restarts the ones that panicked. Returns when none is left.
    pub async fn supervise(&mut self, cancel: &CancellationToken) {
        while let Some(done) = self.set.join_next_with_id().await {
            let (task_id, panicked) = match done {
                Ok((id, ())) => (id, false),
                Err(e) => (e.id(), e.is_panic()),
            };
            let Some(task) = self.running.remove(&task_id) else {
                continue;
            };
            if !panicked || cancel.is_cancelled() {
                continue;
            }
            let name = task.name();
            let delay = self.backoff.entry(name.clone()).or_default().next_delay();
            error!(task = %name, restart_in = ?delay, "task panicked; restarting");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            self.start(task, cancel);
        }
        // Every task ended (all stopped for authentication, or none configured): idle until shutdown.
        cancel.cancelled().await;
    }

    /// Waits up to `deadline` for every task to finish after cancellation, then aborts the rest
    /// and names them.
    pub async fn stop(&mut self, deadline: Duration) {
        let all_done = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all_done).await.is_err() {
            let names: Vec<String> = self.running.values().map(|t| t.name()).collect();
            warn!(still_running = ?names, "shutdown deadline passed; abandoning these tasks");
            self.set.abort_all();
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the daemon");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The text of `rapport status`.
pub async fn status_text(store: &Store, config: &Config) -> Result<String> {
    let counts = store.status_counts().await?;
    let health = store.health().await?;
    let mut out = String::new();
    let _ = writeln!(out, "database:   {:?}", store.backend());
    let _ = writeln!(out, "leads:      {}", counts.leads);
    let _ = writeln!(out, "companies:  {}", counts.companies);
    let _ = writeln!(out, "activities: {}", counts.activities);
    if !counts.enrollments.is_empty() {
        let parts: Vec<String> = counts.enrollments.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let _ = writeln!(out, "enrollments: {}", parts.join(", "));
    }
    let outbox: Vec<String> = counts.outbox.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let _ = writeln!(
        out,
        "outbox:     {}",
        if outbox.is_empty() {
            "empty".to_string()
        } else {
            outbox.join(", ")
        }
    );
    for r in store.outbox_in_state(None, "unknown").await? {
        let _ = writeln!(
            out,
            "  delivery unknown after a crash (not resent): <{}> to {} via {}",
            r.message_id, r.recipient, r.mailbox_id
        );
    }
    let _ = writeln!(out, "\nsources:");
    let ids = config
        .mailboxes
        .iter()
        .map(|m| (m.id.as_str(), "mailbox"))
        .chain(config.calendars.iter().map(|c| (c.id.as_str(), "calendar")));
    for (id, kind) in ids {
        match health.iter().find(|h| h.source_id == id) {
            Some(h) => {
                let last = h
                    .last_success_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_else(|| "never".into());
                let _ = write!(out, "  {id:<20} {kind:<8} {:<12} last sync {last}", h.state);
                if h.state != "ok"
                    && let Some(e) = &h.last_error
                {
                    let _ = write!(out, "  error: {e}");
                }
                let _ = writeln!(out);
            }
            None => {
                let _ = writeln!(out, "  {id:<20} {kind:<8} {:<12} never synced", "-");
            }
        }
    }
    let activity = store.count_by_rep_and_kind(None, None).await?;
    let _ = writeln!(out, "\nactivities by rep:");
    out.push_str(&report::summary_table(config, &activity));
    Ok(out)
}
