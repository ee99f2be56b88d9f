//! The sender: one supervised task per sending mailbox. It claims due steps from the database
//! (no timers in memory), sends within the mailbox's cap and gap, sleeps until the next due
//! time or a short poll, and stops cleanly on cancellation: an SMTP transaction in progress
//! completes and is recorded.
//!
//! After a crash, an outbox row left in `sending` is reconciled before anything is resent: the
//! rep's Sent folder is searched over IMAP for its Message-ID. Found: sent. Not found: resent
//! when the server is known to keep SMTP-sent mail in Sent (or `resend_unknown` is set),
//! otherwise marked `unknown` and reported by `rapport status`.

use std::sync::Arc;

use anyhow::{Context, Result};
use async_imap::types::NameAttribute;
use chrono::{DateTime, Duration, Utc};
use futures_util::TryStreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::engine::{Engine, MailboxLimits};
use super::smtp::SmtpClient;
use crate::activity::{ActivityKind, Direction, NewActivity, SourceKind};
use crate::config::{ImapConfig, MailboxSource, SmtpConfig};
use crate::daemon::Supervised;
use crate::store::OutboxRow;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub sent: usize,
    pub processed: usize,
    /// When there is something to do next (a due step, or the end of a gap or cap).
    pub next_wake: Option<DateTime<Utc>>,
}

/// The sending task of one mailbox.
pub struct MailboxSender {
    pub engine: Arc<Engine>,
    pub mailbox_id: String,
    pub smtp_config: SmtpConfig,
    /// The mailbox's IMAP account, for crash reconciliation and the optional copy to Sent.
    pub imap: Option<ImapConfig>,
    pub limits: MailboxLimits,
    client: SmtpClient,
    /// The leads' version when enroll rules last ran: they run again when leads change.
    leads_seen: std::sync::Mutex<Option<(i64, Option<DateTime<Utc>>)>>,
}

/// Where the sent copy lives: the folder flagged `\Sent`, else `Sent`.
async fn sent_folder(session: &mut crate::sources::mail::imap::Session) -> Result<String> {
    let names: Vec<_> = session
        .list(Some(""), Some("*"))
        .await
        .context("LIST")?
        .try_collect()
        .await
        .context("LIST")?;
    Ok(names
        .iter()
        .find(|n| n.attributes().contains(&NameAttribute::Sent))
        .or_else(|| names.iter().find(|n| n.name().eq_ignore_ascii_case("Sent")))
        .map(|n| n.name().to_owned())
        .unwrap_or_else(|| "Sent".into()))
}

/// Searches the Sent folder for a Message-ID (`UID SEARCH HEADER Message-ID <id>`).
pub async fn found_in_sent(imap: &ImapConfig, message_id: &str) -> Result<bool> {
    let mut session = crate::sources::mail::imap::connect(imap)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let folder = sent_folder(&mut session).await?;
    session
        .select(&folder)
        .await
        .with_context(|| format!("SELECT {folder}"))?;
    let found = session
        .uid_search(format!("HEADER Message-ID \"<{message_id}>\""))
        .await
        .context("UID SEARCH")?;
    let _ = session.logout().await;
    Ok(!found.is_empty())
}

/// APPENDs a copy of a sent message to the Sent folder (flagged `\Seen`).
pub async fn append_to_sent(imap: &ImapConfig, row: &OutboxRow) -> Result<()> {
    let mut session = crate::sources::mail::imap::connect(imap)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let folder = sent_folder(&mut session).await?;
    session
        .append(&folder, Some("(\\Seen)"), None, row.raw.as_bytes())
        .await
        .with_context(|| format!("APPEND to {folder}"))?;
    let _ = session.logout().await;
    Ok(())
}

impl MailboxSender {
    /// A sender for a mailbox with an `smtp:` block.
    pub fn new(engine: Arc<Engine>, mailbox_id: &str) -> Result<MailboxSender> {
        let mb = engine
            .config
            .mailboxes
            .iter()
            .find(|m| m.id == mailbox_id)
            .with_context(|| format!("no mailbox {mailbox_id}"))?;
        let smtp_config = mb
            .smtp
            .clone()
            .with_context(|| format!("mailbox {mailbox_id} has no smtp block"))?;
        let imap = match &mb.source {
            MailboxSource::Imap(c) => Some(c.clone()),
            MailboxSource::Maildir(_) => None,
        };
        let tz = engine
            .config
            .mailbox_owner(mailbox_id)
            .map(|r| r.time_zone)
            .unwrap_or(chrono_tz::Tz::UTC);
        let limits = MailboxLimits {
            daily_cap: smtp_config.daily_cap,
            min_gap: smtp_config.min_gap,
            tz,
        };
        let client = SmtpClient::new(&smtp_config, engine.store.clock.clone())
            .with_context(|| format!("SMTP for mailbox {mailbox_id}"))?;
        Ok(MailboxSender {
            engine,
            mailbox_id: mailbox_id.to_owned(),
            smtp_config,
            imap,
            limits,
            client,
            leads_seen: std::sync::Mutex::new(None),
        })
    }

    /// One sender per mailbox that has an `smtp:` block.
    pub fn for_config(engine: &Arc<Engine>) -> Result<Vec<MailboxSender>> {
        engine
            .config
            .mailboxes
            .iter()
            .filter(|m| m.smtp.is_some())
            .map(|m| MailboxSender::new(engine.clone(), &m.id))
            .collect()
    }

    fn store(&self) -> &crate::store::Store {
        &self.engine.store
    }

    /// Settles rows left in `sending` by a crash (older than the lease, so a live sender's
    /// transaction is never second-guessed). Returns how many were settled.
    pub async fn reconcile(&self) -> Result<usize> {
        let now = self.store().now();
        let lease = Duration::from_std(self.engine.config.sequences.lease).unwrap_or(Duration::minutes(5));
        let rows = self.store().outbox_in_state(Some(&self.mailbox_id), "sending").await?;
        let mut settled = 0;
        for row in rows
            .into_iter()
            .filter(|r| r.attempted_at.is_none_or(|t| t + lease <= now))
        {
            let found = match &self.imap {
                Some(imap) => match found_in_sent(imap, &row.message_id).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        warn!(mailbox = %self.mailbox_id, message_id = %row.message_id, "cannot search Sent; will try again: {e:#}");
                        continue;
                    }
                },
                None => None,
            };
            let resend = self.smtp_config.sent_folder_is_authoritative || self.engine.config.sequences.resend_unknown;
            match found {
                Some(true) => {
                    let e = self
                        .store()
                        .enrollment(row.enrollment_id)
                        .await?
                        .context("enrollment vanished")?;
                    let activity = NewActivity {
                        rep_id: e.rep_id.clone(),
                        kind: ActivityKind::EmailSent,
                        occurred_at: row.attempted_at.unwrap_or(now),
                        source: SourceKind::Sequence,
                        source_id: row.message_id.clone(),
                        thread_key: Some(super::engine::thread_root(&row)),
                        subject: Some(row.subject.clone()),
                        direction: Direction::Outbound,
                        lead_ids: vec![e.lead_id],
                        details: serde_json::json!({ "sequence": e.sequence_id, "step": row.step_index + 1,
                            "enrollment": e.id, "mailbox": row.mailbox_id, "reconciled": true }),
                    };
                    self.store()
                        .outbox_sent(row.id, row.attempted_at.unwrap_or(now), &activity)
                        .await?;
                    self.release_held(e.id).await?;
                    info!(message_id = %row.message_id, "found in Sent after a crash: marked sent");
                }
                Some(false) if resend => {
                    self.store()
                        .outbox_set_state(
                            row.id,
                            "planned",
                            Some("not found in Sent after a crash; resending"),
                            None,
                        )
                        .await?;
                    self.release_held(row.enrollment_id).await?;
                    info!(message_id = %row.message_id, "not in Sent after a crash: will resend");
                }
                _ => {
                    self.store()
                        .outbox_set_state(
                            row.id,
                            "unknown",
                            Some("interrupted by a crash; not found in Sent and the server may not keep SMTP-sent mail there"),
                            None,
                        )
                        .await?;
                    warn!(message_id = %row.message_id, to = %row.recipient, "delivery unknown after a crash: not resent (see `rapport status`)");
                }
            }
            settled += 1;
        }
        Ok(settled)
    }

    /// Lets an enrollment held for an unknown delivery go on.
    async fn release_held(&self, enrollment_id: i64) -> Result<()> {
        if let Some(e) = self.store().enrollment(enrollment_id).await?
            && (e.state == "held" || e.state == "active")
        {
            self.store()
                .update_enrollment(
                    e.id,
                    "active",
                    e.next_step,
                    Some(self.store().now()),
                    None,
                    e.last_step_at,
                    e.auto_reply_seen_at,
                )
                .await?;
        }
        Ok(())
    }

    /// Sends what is due now, as far as the cap and gap allow, and says when to look again.
    /// Stops early when `cancel` fires (between messages, never inside one).
    pub async fn pass(&self, cancel: &CancellationToken) -> Result<PassReport> {
        let mut report = PassReport::default();
        self.reconcile().await?;
        let version = self.store().leads_version().await?;
        let changed = *self.leads_seen.lock().unwrap_or_else(|e| e.into_inner()) != Some(version);
        if changed {
            self.engine.apply_enroll_rules().await?;
            *self.leads_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
        }
        if let (Some(key), Some(addr)) = (
            &self.engine.unsubscribe_key,
            &self.engine.config.sequences.unsubscribe_address,
        ) {
            super::unsubscribe::process_mailto_unsubscribes(self.store(), key, addr).await?;
        }
        let lease = Duration::from_std(self.engine.config.sequences.lease).unwrap_or(Duration::minutes(5));
        let append_to = self.imap.as_ref().filter(|_| self.smtp_config.append_to_sent);
        while !cancel.is_cancelled() {
            let now = self.store().now();
            if let Some(until) = self.engine.next_send_slot(&self.mailbox_id, &self.limits, now).await? {
                report.next_wake = Some(until);
                return Ok(report);
            }
            let Some(e) = self.store().claim_due(&self.mailbox_id, now, now + lease).await? else {
                report.next_wake = self.store().next_due(&self.mailbox_id).await?;
                return Ok(report);
            };
            let progress = self.engine.process(&e, &self.client, &self.limits, append_to).await?;
            report.processed += 1;
            report.sent += progress.sent;
        }
        Ok(report)
    }

    /// Passes until nothing is due at the current time (for `rapport run --once`).
    pub async fn run_until_idle(&self, cancel: &CancellationToken) -> Result<PassReport> {
        let mut total = PassReport::default();
        loop {
            let r = self.pass(cancel).await?;
            total.sent += r.sent;
            total.processed += r.processed;
            total.next_wake = r.next_wake;
            let now = self.store().now();
            if r.processed == 0 || cancel.is_cancelled() || r.next_wake.is_none_or(|t| t > now) {
                return Ok(total);
            }
        }
    }
}

impl Supervised for MailboxSender {
    fn name(&self) -> String {
        format!("sequence sender {}", self.mailbox_id)
    }

    fn run(self: Arc<Self>, cancel: CancellationToken) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            let poll = self.engine.config.sequences.poll_interval;
            let mut failures = 0u32;
            loop {
                let wait = match self.pass(&cancel).await {
                    Ok(r) => {
                        failures = 0;
                        let now = self.store().now();
                        r.next_wake
                            .map(|t| (t - now).to_std().unwrap_or_default())
                            .unwrap_or(poll)
                            .min(poll)
                    }
                    Err(e) => {
                        failures += 1;
                        error!(mailbox = %self.mailbox_id, "sequence sender: {e:#}");
                        poll.min(std::time::Duration::from_secs(1 << failures.min(5)))
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait.max(std::time::Duration::from_millis(200))) => {}
                }
            }
        })
    }
}

/// Loads the sequences, applies their enroll rules and builds one sender per mailbox with an
/// `smtp:` block (none when no sequences are configured).
pub async fn start_senders(
    config: &crate::config::Config,
    store: &crate::store::Store,
) -> Result<Vec<Arc<MailboxSender>>> {
    if config.sequences_dir.is_none() {
        return Ok(Vec::new());
    }
    let engine = Arc::new(Engine::load(Arc::new(config.clone()), store.clone())?);
    engine.apply_enroll_rules().await?;
    Ok(MailboxSender::for_config(&engine)?.into_iter().map(Arc::new).collect())
}

/// `rapport run --once`: every sender sends what is due now.
pub async fn send_due_once(senders: &[Arc<MailboxSender>]) {
    let cancel = CancellationToken::new();
    for s in senders {
        match s.run_until_idle(&cancel).await {
            Ok(r) if r.sent > 0 => info!(mailbox = %s.mailbox_id, sent = r.sent, "sequence emails sent"),
            Ok(_) => {}
            Err(e) => error!(mailbox = %s.mailbox_id, "sequence sender: {e:#}"),
        }
    }
}
