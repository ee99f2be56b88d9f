//! Reload on SIGHUP (`systemctl reload rapport`): re-read the config file, validate it, and
//! apply it to the running daemon, or reject it (every problem logged with file:line:column)
//! and keep running on the old one.
//!
//! Applying it here means the mailbox list: tasks of new mailboxes start, tasks of removed
//! ones stop (by name, through the [`Supervisor`], after storing the mail already read), and
//! tasks whose settings, owner or matching rules changed restart. The other supervised tasks
//! (calendars, sequence senders, the HTTP server) are [task groups](Reloader::add_group): the
//! group builds the tasks the new config describes, each with a fingerprint of what it depends
//! on (settings, owner, rules, the sequence and targets files' content), and the same rule
//! applies: new ones start, removed ones stop, changed ones restart, unchanged ones run on.
//! Anything else registers a hook with [`Reloader::add_hook`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{MailboxTask, Supervised, Supervisor, notify};
use crate::config::{Config, ConfigError, MailboxConfig};
use crate::sources::mail::{Ingestor, MatchRules};
use crate::store::Store;

/// Called with the new config after a successful reload; an error is logged and does not undo
/// the reload or stop the other hooks.
pub type ReloadHook = Box<dyn Fn(Arc<Config>) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// A task a config describes, with a fingerprint of everything it depends on: a reload restarts
/// the task when the fingerprint changes. Fingerprints hold no secrets (configs hold secret
/// references, never values), and are compared within one process only.
pub struct PlannedTask {
    pub fingerprint: String,
    pub task: Arc<dyn Supervised>,
}

/// Builds the tasks of a group for a config and the matching rules in force.
pub type GroupBuilder =
    Box<dyn Fn(Arc<Config>, Arc<MatchRules>) -> BoxFuture<'static, Result<Vec<PlannedTask>>> + Send + Sync>;

/// A kind of supervised task besides mailboxes, reconciled on every reload.
struct TaskGroup {
    kind: String,
    build: GroupBuilder,
    /// Name → fingerprint of the tasks started.
    running: HashMap<String, String>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new config is invalid; the old one stays. Holds the problems as printed.
    Rejected(String),
    /// Applied: mailbox ids started, stopped and restarted.
    Applied {
        started: Vec<String>,
        stopped: Vec<String>,
        restarted: Vec<String>,
    },
}

/// Holds the config the daemon runs on and applies new ones.
pub struct Reloader {
    config: Arc<Config>,
    /// The same config for tasks that follow reloads (the lead-index refresher).
    published: watch::Sender<Arc<Config>>,
    store: Store,
    /// The matching rules every mailbox task and the lead-index refresher use; replaced when the
    /// rules in the config change.
    rules: watch::Sender<Arc<MatchRules>>,
    hooks: Vec<(String, ReloadHook)>,
    groups: Vec<TaskGroup>,
}

/// The parts of the config a mailbox task depends on, as text (secrets are references, never
/// values, so this holds none): when it changes, the task restarts.
fn fingerprint(config: &Config, mb: &MailboxConfig) -> String {
    let owner = config.mailbox_owner(&mb.id).map(rep_identity);
    format!("{mb:?}|{owner:?}|{}", rules_fingerprint(config))
}

/// What matching knows of a rep: who they are, not which sources they own.
fn rep_identity(rep: &crate::config::RepConfig) -> (&str, &str, &[String]) {
    (&rep.id, &rep.email, &rep.aliases)
}

/// The parts of the config [`MatchRules`] is built from.
pub fn rules_fingerprint(config: &Config) -> String {
    let reps: Vec<_> = config.reps.iter().map(rep_identity).collect();
    format!(
        "{:?}|{:?}|{:?}|{reps:?}",
        config.internal_domains, config.matching, config.privacy
    )
}

/// The supervisor's name of a mailbox task.
pub fn mailbox_task_name(id: &str) -> String {
    format!("mailbox {id}")
}

impl Reloader {
    pub fn new(config: Config, store: Store, rules: Arc<MatchRules>) -> Reloader {
        let config = Arc::new(config);
        Reloader {
            published: watch::Sender::new(config.clone()),
            config,
            store,
            rules: watch::Sender::new(rules),
            hooks: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Adds a group of tasks (`kind` names it in logs), builds it for the config in force and
    /// starts its tasks. On each reload the group is built again and reconciled.
    pub async fn add_group<F>(
        &mut self,
        kind: impl Into<String>,
        build: F,
        supervisor: &mut Supervisor,
        cancel: &CancellationToken,
    ) -> Result<()>
    where
        F: Fn(Arc<Config>, Arc<MatchRules>) -> BoxFuture<'static, Result<Vec<PlannedTask>>> + Send + Sync + 'static,
    {
        let kind = kind.into();
        let rules = self.rules.borrow().clone();
        let planned = build(self.config.clone(), rules)
            .await
            .with_context(|| format!("starting the {kind}"))?;
        let mut running = HashMap::new();
        for p in planned {
            running.insert(p.task.name(), p.fingerprint);
            supervisor.start(p.task, cancel);
        }
        self.groups.push(TaskGroup {
            kind,
            build: Box::new(build),
            running,
        });
        Ok(())
    }

    /// Builds every group for `new` and starts, stops and restarts its tasks to match. A group
    /// that cannot be built (say, a sequence file that no longer parses) keeps its tasks.
    async fn reconcile_groups(&mut self, new: &Arc<Config>, supervisor: &mut Supervisor, cancel: &CancellationToken) {
        let deadline = new.shutdown_timeout;
        let rules = self.rules.borrow().clone();
        for group in &mut self.groups {
            let planned = match (group.build)(new.clone(), rules.clone()).await {
                Ok(p) => p,
                Err(e) => {
                    error!(group = %group.kind, "cannot apply the new configuration ({e:#}); its tasks run on unchanged");
                    continue;
                }
            };
            let mut wanted = HashMap::new();
            for p in planned {
                wanted.insert(p.task.name(), p);
            }
            for name in group.running.keys() {
                if !wanted.contains_key(name) {
                    supervisor.stop_task(name, deadline).await;
                    info!(task = %name, "removed from the configuration; stopped");
                }
            }
            let mut running = HashMap::new();
            for (name, p) in wanted {
                match group.running.get(&name) {
                    None => {
                        supervisor.start(p.task, cancel);
                        info!(task = %name, "added; started");
                    }
                    Some(fp) if *fp != p.fingerprint => {
                        supervisor.stop_task(&name, deadline).await;
                        supervisor.start(p.task, cancel);
                        info!(task = %name, "settings changed; restarted");
                    }
                    Some(_) if !supervisor.is_running(&name) => {
                        supervisor.start(p.task, cancel);
                        info!(task = %name, "was stopped; started again");
                    }
                    Some(_) => {}
                }
                running.insert(name, p.fingerprint);
            }
            group.running = running;
        }
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.clone()
    }

    /// The config in force, updated on every applied reload.
    pub fn configs(&self) -> watch::Receiver<Arc<Config>> {
        self.published.subscribe()
    }

    /// The matching rules in force, updated on reload.
    pub fn rules(&self) -> watch::Receiver<Arc<MatchRules>> {
        self.rules.subscribe()
    }

    /// Registers `hook` to be called with every new config that is applied.
    pub fn add_hook<F>(&mut self, name: impl Into<String>, hook: F)
    where
        F: Fn(Arc<Config>) -> BoxFuture<'static, Result<()>> + Send + Sync + 'static,
    {
        self.hooks.push((name.into(), Box::new(hook)));
    }

    /// Builds the task of one mailbox with the rules in force.
    pub fn mailbox_task(&self, config: &Config, mb: &MailboxConfig) -> Result<MailboxTask> {
        let rep = config
            .mailbox_owner(&mb.id)
            .with_context(|| format!("mailbox {} belongs to no rep", mb.id))?;
        Ok(MailboxTask {
            config: mb.clone(),
            ingestor: Arc::new(Ingestor::new(
                self.store.clone(),
                &mb.id,
                rep,
                self.rules.borrow().clone(),
            )),
        })
    }

    /// Re-reads the config file and applies it, or rejects it and keeps the old one.
    pub async fn reload(&mut self, supervisor: &mut Supervisor, cancel: &CancellationToken) -> ReloadOutcome {
        let path: PathBuf = self.config.path.clone();
        notify::reloading();
        info!(config = %path.display(), "reloading the configuration");
        let outcome = match Config::load(&path) {
            Ok(new) => match self.apply(new, supervisor, cancel).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    error!("reload failed, running on with the mailboxes started so far: {e:#}");
                    ReloadOutcome::Rejected(format!("{e:#}"))
                }
            },
            Err(ConfigError::Invalid(d)) => {
                for line in d.to_string().lines().filter(|l| !l.trim().is_empty()) {
                    error!("{line}");
                }
                error!(
                    config = %path.display(),
                    "the new configuration is invalid; still running on the previous one"
                );
                ReloadOutcome::Rejected(d.to_string())
            }
            Err(e) => {
                error!("cannot reload: {e}; still running on the previous configuration");
                ReloadOutcome::Rejected(e.to_string())
            }
        };
        notify::ready(&format!("running: {} mailboxes", self.config.mailboxes.len()));
        outcome
    }

    async fn apply(
        &mut self,
        new: Config,
        supervisor: &mut Supervisor,
        cancel: &CancellationToken,
    ) -> Result<ReloadOutcome> {
        let old = self.config.clone();
        if new.database.url != old.database.url || new.database.max_connections != old.database.max_connections {
            warn!("the database settings changed; they take effect at the next restart");
        }
        self.store.sync_reps(&new).await.context("writing the reps")?;
        if rules_fingerprint(&new) != rules_fingerprint(&old) {
            let index = self.store.load_lead_index().await?;
            self.rules.send_replace(Arc::new(MatchRules::new(&new, index)));
            info!("matching rules changed; every mailbox restarts with them");
        }
        let before: HashMap<&str, String> = old
            .mailboxes
            .iter()
            .map(|m| (m.id.as_str(), fingerprint(&old, m)))
            .collect();
        let after: HashMap<&str, String> = new
            .mailboxes
            .iter()
            .map(|m| (m.id.as_str(), fingerprint(&new, m)))
            .collect();
        let deadline = new.shutdown_timeout;
        let (mut started, mut stopped, mut restarted) = (Vec::new(), Vec::new(), Vec::new());
        for m in &old.mailboxes {
            if !after.contains_key(m.id.as_str()) {
                supervisor.stop_task(&mailbox_task_name(&m.id), deadline).await;
                info!(mailbox = %m.id, "mailbox removed from the configuration; its task stopped");
                stopped.push(m.id.clone());
            }
        }
        for m in &new.mailboxes {
            let task = Arc::new(self.mailbox_task(&new, m)?);
            match before.get(m.id.as_str()) {
                None => {
                    supervisor.start(task, cancel);
                    info!(mailbox = %m.id, "mailbox added; its task started");
                    started.push(m.id.clone());
                }
                Some(fp) if *fp != after[m.id.as_str()] => {
                    supervisor.stop_task(&mailbox_task_name(&m.id), deadline).await;
                    supervisor.start(task, cancel);
                    info!(mailbox = %m.id, "mailbox settings changed; its task restarted");
                    restarted.push(m.id.clone());
                }
                // Not running although configured (it stopped after a refused login): a reload
                // is how an operator says the password is fixed.
                Some(_) if !supervisor.is_running(&mailbox_task_name(&m.id)) => {
                    supervisor.start(task, cancel);
                    info!(mailbox = %m.id, "mailbox task was stopped; started again");
                    restarted.push(m.id.clone());
                }
                Some(_) => {}
            }
        }
        let new = Arc::new(new);
        self.config = new.clone();
        self.published.send_replace(new.clone());
        self.reconcile_groups(&new, supervisor, cancel).await;
        for (name, hook) in &self.hooks {
            if let Err(e) = hook(new.clone()).await {
                error!(hook = %name, "reload hook failed: {e:#}");
            }
        }
        info!(
            started = started.len(),
            stopped = stopped.len(),
            restarted = restarted.len(),
            "configuration reloaded"
        );
        Ok(ReloadOutcome::Applied {
            started,
            stopped,
            restarted,
        })
    }
}

/// SIGHUP, registered at once (so that a SIGHUP right after start reloads instead of killing
/// the process).
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    pub fn register() -> Hangups {
        #[cfg(unix)]
        {
            let signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!("cannot listen for SIGHUP ({e}); reload needs a restart");
                    None
                }
            };
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    /// Completes at the next SIGHUP; never when none can arrive.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}
