//! Wires the parts together and supervises them: open the store, import seed leads, start
//! one task per source, stop cleanly. No business logic lives here.

use std::fmt::Write;
use std::future::Future;

use anyhow::Result;
use tracing::{info, warn};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::leads;
use crate::report;
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

/// Runs the daemon until `shutdown` completes (or, with `once`, until one pass is done).
pub async fn run(
    config: Config,
    clock: SharedClock,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let store = prepare_store(&config, clock).await?;
    for file in &config.lead_files {
        let report = leads::import_file(&store, &config, file).await?;
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
    if options.once {
        let counts = store.count_by_rep_and_kind(None, None).await?;
        print!("{}", report::summary_table(&config, &counts));
        store.close().await;
        return Ok(());
    }
    info!(
        reps = config.reps.len(),
        mailboxes = config.mailboxes.len(),
        "rapport is running"
    );
    shutdown.await;
    info!("shutting down");
    store.close().await;
    Ok(())
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
