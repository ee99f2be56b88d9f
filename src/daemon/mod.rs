//! Wires the parts together and supervises them: open the store, import seed leads, start
//! one task per mailbox, stop cleanly within the shutdown deadline. No business logic here.

mod calendar;
mod groups;
mod mailbox;
pub mod notify;
pub mod reload;
mod source_task;
mod supervisor;

use std::fmt::Write;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use calendar::{CalendarTask, probe_calendar};
pub use mailbox::MailboxTask;
pub use reload::{ReloadOutcome, Reloader};
pub use supervisor::{Beat, HEARTBEAT_EVERY, Heartbeats, Supervised, Supervisor};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::leads;
use crate::report;
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

/// One task per configured calendar, sharing the matching rules.
pub fn calendar_tasks(config: &Config, store: &Store, rules: &Arc<MatchRules>) -> Result<Vec<CalendarTask>> {
    let mut tasks = Vec::new();
    for cal in &config.calendars {
        let rep = config
            .calendar_owner(&cal.id)
            .with_context(|| format!("calendar {} belongs to no rep", cal.id))?;
        let ingestor = crate::sources::calendar::CalendarIngestor::new(store.clone(), &cal.id, rep, rules.clone());
        tasks.push(CalendarTask::new(cal.clone(), Arc::new(ingestor)));
    }
    Ok(tasks)
}

/// Matches mail seen earlier against the leads known now, so that importing a lead links the
/// mail already exchanged with it: mail skipped for want of a lead may count now, and counted
/// mail with a participant who is a lead now is linked to that lead too. Returns how many
/// messages count for a lead they did not count for before.
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
            let stats = t.ingestor.ingest_again(chunk).await?;
            counted += stats.counted + stats.linked;
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

/// `rapport run --once`: a source that failed is logged and recorded (`auth_failed` or
/// `failed`: nothing retries it in this run); the others go on.
async fn once_failed(store: &Store, id: &str, kind: &str, e: &crate::sources::SourceError) -> Result<()> {
    error!(source = %id, "sync failed: {e:#}");
    let state = if e.is_auth() {
        crate::store::HealthState::AuthFailed
    } else {
        crate::store::HealthState::Failed
    };
    store.set_health(id, kind, state, Some(&format!("{e:#}"))).await
}

/// Runs the daemon until `shutdown` completes (or, with `once`, until one pass is done).
pub async fn run(
    config: Config,
    clock: SharedClock,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    // SIGHUP's default action ends the process: listen before anything can send one.
    let mut hangups = reload::Hangups::register();
    let targets = crate::targets::Targets::for_config(&config).context("loading the targets file")?;
    let store = prepare_store(&config, clock).await?;
    import_lead_files(&config, &store).await?;
    rematch_seen_mail(&config, &store).await?;
    let (tasks, rules) = mailbox_tasks(&config, &store).await?;

    if options.once {
        let calendars = calendar_tasks(&config, &store, &rules)?;
        let senders = crate::sequences::sender::start_senders(&config, &store).await?;
        for t in &tasks {
            match t.sync_once().await {
                Ok(stats) => t.ingestor.synced(t.kind(), &stats).await,
                Err(e) => once_failed(&store, &t.config.id, t.kind(), &e).await?,
            }
        }
        for c in &calendars {
            match c.sync_once().await {
                Ok(stats) => c.ingestor.synced(c.kind(), &stats).await,
                Err(e) => once_failed(&store, &c.config.id, c.kind(), &e).await?,
            }
        }
        crate::sequences::sender::send_due_once(&senders).await;
        let counts = store.count_by_rep_and_kind(None, None).await?;
        print!("{}", report::summary_table(&config, &counts));
        print!("{}", report::targets_summary(&store, &config, &targets).await?);
        store.close().await;
        return Ok(());
    }

    let cancel = CancellationToken::new();
    let mut supervisor = Supervisor::default();
    for t in tasks {
        supervisor.start(Arc::new(t), &cancel);
    }
    let mut reloader = Reloader::new(config.clone(), store.clone(), rules);
    reloader
        .add_group("calendars", groups::calendars(store.clone()), &mut supervisor, &cancel)
        .await?;
    reloader
        .add_group(
            "sequence senders",
            groups::senders(store.clone()),
            &mut supervisor,
            &cancel,
        )
        .await?;
    reloader
        .add_group("HTTP server", groups::http(store.clone()), &mut supervisor, &cancel)
        .await?;
    let refresher = tokio::spawn(refresh_index(
        reloader.configs(),
        store.clone(),
        reloader.rules(),
        cancel.child_token(),
    ));
    let watchdog = tokio::spawn(notify::watchdog(supervisor.heartbeats(), cancel.child_token()));
    info!(
        reps = config.reps.len(),
        mailboxes = config.mailboxes.len(),
        calendars = config.calendars.len(),
        "rapport is running"
    );
    notify::ready(&format!("running: {} mailboxes", config.mailboxes.len()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hangups.recv() => {
                reloader.reload(&mut supervisor, &cancel).await;
            }
            _ = supervisor.next_exit(&cancel) => {}
        }
    }
    let deadline = reloader.config().shutdown_timeout;
    info!(deadline = ?deadline, "shutting down: finishing the work in hand");
    notify::stopping();
    cancel.cancel();
    supervisor.stop(deadline).await;
    let _ = refresher.await;
    let _ = watchdog.await;
    store.close().await;
    info!("stopped");
    notify::flush(Duration::from_secs(1));
    Ok(())
}

/// Reloads the lead index when leads change outside this process (an import from the CLI).
async fn refresh_index(
    config: watch::Receiver<Arc<Config>>,
    store: Store,
    rules: watch::Receiver<Arc<MatchRules>>,
    cancel: CancellationToken,
) {
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
                    let current = rules.borrow().clone();
                    *current.index.write().await = index;
                    last = Some(v);
                    let config = config.borrow().clone();
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

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives while the daemon starts is not lost (nor
/// does it kill the process by the default action).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    warn!(
                        "cannot listen for SIGTERM/SIGINT ({:?}, {:?}); only Ctrl-C stops the daemon",
                        term.err(),
                        int.err()
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
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
                let lag = h
                    .last_success_at
                    .map(|t| format_lag(store.now() - t))
                    .unwrap_or_else(|| "-".into());
                let _ = write!(out, "  {id:<20} {kind:<8} {:<12} last sync {last} (lag {lag})", h.state);
                if h.state != "ok"
                    && let Some(e) = &h.last_error
                {
                    let _ = write!(out, "  error: {e}");
                }
                if h.state == crate::store::HealthState::AuthFailed.as_str() {
                    let _ = write!(
                        out,
                        "  -> fix the credentials, then `systemctl reload rapport` (or restart it)"
                    );
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

/// A lag as `42s`, `5m`, `3h 20m` or `2d 4h`.
pub fn format_lag(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}
