//! The task groups the daemon supervises besides mailboxes, as the reloader builds them: what
//! each is made from, and what its fingerprint covers (a reload restarts a task when its
//! fingerprint changes).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::future::BoxFuture;
use tracing::error;

use super::calendar_tasks;
use super::reload::{PlannedTask, rules_fingerprint};
use crate::config::Config;
use crate::http::HttpServer;
use crate::sequences::unsubscribe::{UnsubscribeKey, unsubscribe_router};
use crate::sources::mail::MatchRules;
use crate::store::Store;

type Built = BoxFuture<'static, Result<Vec<PlannedTask>>>;

/// One task per calendar; restarted when its settings, its owner or the matching rules change.
pub fn calendars(store: Store) -> impl Fn(Arc<Config>, Arc<MatchRules>) -> Built + Send + Sync + 'static {
    move |config, rules| {
        let store = store.clone();
        Box::pin(async move {
            let rules_fp = rules_fingerprint(&config);
            let tasks = calendar_tasks(&config, &store, &rules)?;
            Ok(tasks
                .into_iter()
                .map(|t| {
                    let owner = config
                        .calendar_owner(&t.config.id)
                        .map(|r| (&r.id, &r.email, r.time_zone));
                    PlannedTask {
                        fingerprint: format!("{:?}|{owner:?}|{rules_fp}", t.config),
                        task: Arc::new(t),
                    }
                })
                .collect())
        })
    }
}

/// One sequence sender per mailbox with an `smtp:` block; restarted when that block, the reps,
/// the `sequences:` settings or any sequence file changes (the engine reads the files at start).
pub fn senders(store: Store) -> impl Fn(Arc<Config>, Arc<MatchRules>) -> Built + Send + Sync + 'static {
    move |config, _rules| {
        let store = store.clone();
        Box::pin(async move {
            let shared = format!(
                "{:?}|{:?}|{:?}|{}",
                config.sequences_dir,
                config.sequences,
                config.reps,
                sequence_files_digest(&config)
            );
            let senders = crate::sequences::sender::start_senders(&config, &store).await?;
            Ok(senders
                .into_iter()
                .map(|s| {
                    let mailbox = config.mailboxes.iter().find(|m| m.id == s.mailbox_id);
                    PlannedTask {
                        fingerprint: format!("{mailbox:?}|{shared}"),
                        task: s,
                    }
                })
                .collect())
        })
    }
}

/// The HTTP server (when the config has an `http:` section), with the unsubscribe endpoints
/// when an unsubscribe key is set. It shows the whole config (reps, teams, targets), so any
/// change to the config or to the targets file restarts it: a rebind that takes milliseconds.
pub fn http(store: Store) -> impl Fn(Arc<Config>, Arc<MatchRules>) -> Built + Send + Sync + 'static {
    move |config, _rules| {
        let store = store.clone();
        Box::pin(async move {
            if !config.http.enabled {
                return Ok(Vec::new());
            }
            let targets = crate::targets::Targets::for_config(&config).context("loading the targets file")?;
            let targets_text = config
                .targets_file
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok());
            let mut server = HttpServer::new(store.clone(), (*config).clone(), targets);
            match UnsubscribeKey::from_config(&config) {
                Ok(Some(key)) => server = server.with_routes(unsubscribe_router(store.clone(), key)),
                Ok(None) => {}
                Err(e) => error!("cannot read the unsubscribe key ({e:#}); /unsubscribe links will answer 404"),
            }
            Ok(vec![PlannedTask {
                fingerprint: format!("{config:?}|{targets_text:?}"),
                task: Arc::new(server),
            }])
        })
    }
}

/// A digest of the sequence files' names and content.
fn sequence_files_digest(config: &Config) -> String {
    let Some(dir) = &config.sequences_dir else {
        return String::new();
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        std::fs::read(&f).ok().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}
