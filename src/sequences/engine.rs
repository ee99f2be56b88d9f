//! Enrolling leads and moving a claimed enrollment through its steps: exit rules, waits,
//! tasks, rendering, and the outbox row written (with its Message-ID) before any SMTP
//! transaction starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use super::definition::{Sequence, Step};
use super::return_date;
use super::schedule::{SendCalendar, local_to_utc, resolve_tz};
use super::smtp::{OutgoingEmail, SendOutcome, SmtpClient, build_message, new_message_id};
use super::template::{ContextParts, context};
use super::unsubscribe::UnsubscribeKey;
use crate::activity::{ActivityKind, Direction, NewActivity, SourceKind};
use crate::config::{Config, ImapConfig, RepConfig};
use crate::store::{EnrollOutcome, Enrollment, Lead, NewOutbox, OutboxRow, Store};

/// Retries of a message after temporary SMTP failures before it is given up.
pub const MAX_ATTEMPTS: i32 = 8;

/// The sequences known to the daemon and what sending needs besides.
pub struct Engine {
    pub store: Store,
    pub config: Arc<Config>,
    /// The current version of every sequence file, by id.
    pub sequences: HashMap<String, Arc<Sequence>>,
    /// Older versions that enrollments are pinned to, parsed from the stored text.
    pinned: Mutex<HashMap<(String, String), Arc<Sequence>>>,
    pub unsubscribe_key: Option<UnsubscribeKey>,
}

/// Why a lead could not be enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollResult {
    Enrolled {
        enrollment_id: i64,
        first_due: DateTime<Utc>,
    },
    AlreadyEnrolled,
    Refused(String),
}

/// A sending mailbox's limits, shared by every sequence that sends through it.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    pub daily_cap: u32,
    pub min_gap: std::time::Duration,
    /// The zone whose days the cap counts (the mailbox owner's).
    pub tz: chrono_tz::Tz,
}

/// What processing a claimed enrollment did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub sent: usize,
    pub stopped: Option<String>,
}

impl Engine {
    pub fn new(config: Arc<Config>, store: Store, sequences: Vec<Sequence>) -> Result<Engine> {
        let unsubscribe_key = UnsubscribeKey::from_config(&config)?;
        Ok(Engine {
            store,
            config,
            sequences: sequences.into_iter().map(|s| (s.id.clone(), Arc::new(s))).collect(),
            pinned: Mutex::new(HashMap::new()),
            unsubscribe_key,
        })
    }

    /// Loads the sequence files of the config (none when no `sequences_dir` is set).
    pub fn load(config: Arc<Config>, store: Store) -> Result<Engine> {
        let sequences = match &config.sequences_dir {
            Some(dir) => super::load_dir(dir).map_err(|d| anyhow::anyhow!("{d}"))?,
            None => Vec::new(),
        };
        Engine::new(config, store, sequences)
    }

    /// The version an enrollment is pinned to.
    pub async fn pinned(&self, id: &str, version: &str) -> Result<Option<Arc<Sequence>>> {
        if let Some(s) = self.sequences.get(id).filter(|s| s.version == version) {
            return Ok(Some(s.clone()));
        }
        let key = (id.to_owned(), version.to_owned());
        if let Some(s) = self.pinned.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Some(s.clone()));
        }
        let Some(src) = self.store.sequence_version_source(id, version).await? else {
            return Ok(None);
        };
        let path = self
            .config
            .sequences_dir
            .clone()
            .unwrap_or_default()
            .join(format!("{id}.yaml"));
        let seq = Sequence::from_str(&path, &src).map_err(|d| anyhow::anyhow!("{d}"))?;
        let seq = Arc::new(seq);
        self.pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, seq.clone());
        Ok(Some(seq))
    }

    /// The rep and the mailbox that send this sequence to this lead.
    pub fn sender_for(&self, seq: &Sequence, lead: &Lead) -> Result<(&RepConfig, String), String> {
        if let Some(mb) = &seq.mailbox {
            let rep = self
                .config
                .mailbox_owner(mb)
                .ok_or_else(|| format!("sequence {} names mailbox {mb}, which belongs to no rep", seq.id))?;
            return Ok((rep, mb.clone()));
        }
        let owner = lead.owner_rep.as_deref().ok_or_else(|| {
            format!(
                "lead {} has no owner rep and sequence {} names no mailbox",
                lead.email, seq.id
            )
        })?;
        let rep = self
            .config
            .rep(owner)
            .ok_or_else(|| format!("lead {} is owned by unknown rep {owner}", lead.email))?;
        let mb = rep
            .mailboxes
            .iter()
            .find(|m| self.config.mailboxes.iter().any(|c| &c.id == *m && c.smtp.is_some()))
            .ok_or_else(|| format!("rep {owner} has no mailbox with an `smtp:` block"))?;
        Ok((rep, mb.clone()))
    }

    /// The sending calendar of a lead in a sequence.
    pub fn calendar<'a>(&self, seq: &'a Sequence, lead: &Lead, rep: Option<&RepConfig>) -> SendCalendar<'a> {
        SendCalendar {
            tz: resolve_tz(lead.time_zone.as_deref(), rep.map(|r| r.time_zone), seq.time_zone),
            window: &seq.window,
            holidays: &seq.holidays,
        }
    }

    /// Enrolls a lead (by address) in a sequence, first step due at the next window opening.
    pub async fn enroll(&self, sequence_id: &str, email: &str) -> Result<EnrollResult> {
        let Some(seq) = self.sequences.get(sequence_id) else {
            bail!("no sequence `{sequence_id}`");
        };
        let Some(lead) = self.store.lead_by_email(email).await? else {
            return Ok(EnrollResult::Refused(format!("no lead with address {email}")));
        };
        let lead = self.store.lead_for_sending(lead.id).await?.context("lead vanished")?;
        self.enroll_lead(seq, &lead).await
    }

    pub async fn enroll_lead(&self, seq: &Sequence, lead: &Lead) -> Result<EnrollResult> {
        if lead.unsubscribed_at.is_some() {
            return Ok(EnrollResult::Refused(format!("{} unsubscribed", lead.email)));
        }
        if let Some(reason) = self.store.suppression_of(&lead.email).await? {
            return Ok(EnrollResult::Refused(format!(
                "{} is suppressed ({reason})",
                lead.email
            )));
        }
        let (rep, mailbox) = match self.sender_for(seq, lead) {
            Ok(x) => x,
            Err(why) => return Ok(EnrollResult::Refused(why)),
        };
        let now = self.store.now();
        let cal = self.calendar(seq, lead, Some(rep));
        let due = cal.next_send_time(now, lead.id as u64);
        self.store
            .save_sequence_version(
                &seq.id,
                &seq.version,
                &std::fs::read_to_string(&seq.path).unwrap_or_default(),
            )
            .await?;
        Ok(
            match self
                .store
                .enroll(&seq.id, &seq.version, lead.id, &rep.id, &mailbox, due)
                .await?
            {
                EnrollOutcome::Enrolled(id) => EnrollResult::Enrolled {
                    enrollment_id: id,
                    first_due: due,
                },
                EnrollOutcome::AlreadyEnrolled => EnrollResult::AlreadyEnrolled,
            },
        )
    }

    /// Evaluates every sequence's enroll rules against leads never enrolled in it.
    pub async fn apply_enroll_rules(&self) -> Result<usize> {
        let mut n = 0;
        for seq in self.sequences.values().filter(|s| !s.enroll.is_empty()) {
            for lead in self.store.leads_never_enrolled(&seq.id).await? {
                let matches = seq.enroll.iter().any(|r| match r {
                    super::definition::EnrollRule::Status(s) => lead.status.eq_ignore_ascii_case(s),
                    super::definition::EnrollRule::Attribute { name, equals } => lead
                        .attributes
                        .0
                        .get(name)
                        .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                        .is_some_and(|v| v.eq_ignore_ascii_case(equals)),
                });
                if matches && matches!(self.enroll_lead(seq, &lead).await?, EnrollResult::Enrolled { .. }) {
                    n += 1;
                }
            }
        }
        if n > 0 {
            info!(leads = n, "enrolled by sequence rules");
        }
        Ok(n)
    }

    async fn stop(&self, e: &Enrollment, step: usize, state: &str, reason: &str) -> Result<Progress> {
        info!(enrollment = e.id, sequence = %e.sequence_id, lead = e.lead_id, %reason, "enrollment {state}");
        self.store
            .update_enrollment(
                e.id,
                state,
                step as i32,
                None,
                Some(reason),
                e.last_step_at,
                e.auto_reply_seen_at,
            )
            .await?;
        Ok(Progress {
            sent: 0,
            stopped: Some(reason.to_owned()),
        })
    }

    /// When the mailbox may send next, if not now: its daily cap (in `limits.tz` days) and
    /// minimum gap count every sequence's attempts.
    pub async fn next_send_slot(
        &self,
        mailbox_id: &str,
        limits: &MailboxLimits,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let day_start = SendCalendar::day_start(limits.tz, now);
        let stats = self.store.send_stats(mailbox_id, day_start).await?;
        if stats.today >= i64::from(limits.daily_cap) {
            let tomorrow = now
                .with_timezone(&limits.tz)
                .date_naive()
                .succ_opt()
                .unwrap_or_default();
            return Ok(Some(local_to_utc(limits.tz, tomorrow.and_time(chrono::NaiveTime::MIN))));
        }
        if let Some(last) = stats.last_attempt {
            let ready = last + Duration::from_std(limits.min_gap).unwrap_or_default();
            if ready > now {
                return Ok(Some(ready));
            }
        }
        Ok(None)
    }

    /// Moves a claimed enrollment as far as it can go now: at most one email is sent per call,
    /// and only when the mailbox's cap and gap allow; waits, pauses and exits are written back.
    pub async fn process(
        &self,
        e: &Enrollment,
        smtp: &SmtpClient,
        limits: &MailboxLimits,
        append_to: Option<&ImapConfig>,
    ) -> Result<Progress> {
        let now = self.store.now();
        let start = usize::try_from(e.next_step).unwrap_or(0);
        let Some(seq) = self.pinned(&e.sequence_id, &e.sequence_version).await? else {
            return self.stop(e, start, "stopped", "sequence_removed").await;
        };
        let Some(current) = self.sequences.get(&e.sequence_id).cloned() else {
            return self.stop(e, start, "stopped", "sequence_removed").await;
        };
        let Some(lead) = self.store.lead_for_sending(e.lead_id).await? else {
            return self.stop(e, start, "stopped", "lead_deleted").await;
        };
        let rep = self.config.rep(&e.rep_id);
        let cal = self.calendar(&seq, &lead, rep);
        let key = (e.id as u64) << 16 ^ start as u64;

        // Exit rules, from what mail capture and the calendars logged.
        if lead.unsubscribed_at.is_some() {
            return self.stop(e, start, "stopped", "unsubscribed").await;
        }
        if lead.bounced_at.is_some() {
            return self.stop(e, start, "stopped", "bounced").await;
        }
        let events = self.store.lead_events_since(lead.id, e.enrolled_at).await?;
        for ev in &events {
            let reason = match ev.kind.as_str() {
                "reply_received" => "replied",
                "meeting_booked" => "meeting_booked",
                "bounce" => "bounced",
                _ => continue,
            };
            return self.stop(e, start, "stopped", reason).await;
        }
        let mut auto_seen = e.auto_reply_seen_at;
        if let Some(ar) = events
            .iter()
            .rfind(|ev| ev.kind == "auto_reply" && e.auto_reply_seen_at.is_none_or(|s| ev.occurred_at > s))
        {
            let stated = ar
                .subject
                .as_deref()
                .and_then(|s| return_date::resume_date(s, ar.occurred_at.with_timezone(&cal.tz).date_naive()))
                .map(|d| local_to_utc(cal.tz, d.and_time(chrono::NaiveTime::MIN)));
            let resume = stated.unwrap_or_else(|| {
                ar.occurred_at + Duration::from_std(seq.auto_reply_pause).unwrap_or(Duration::days(7))
            });
            auto_seen = Some(ar.occurred_at);
            if resume > now {
                let due = cal.next_send_time(resume, key);
                info!(enrollment = e.id, lead = %lead.email, resume = %due, "paused after an auto-reply");
                self.store
                    .update_enrollment(
                        e.id,
                        "paused",
                        start as i32,
                        Some(due),
                        Some("auto_reply"),
                        e.last_step_at,
                        auto_seen,
                    )
                    .await?;
                return Ok(Progress::default());
            }
        }

        let mut progress = Progress::default();
        let mut step = start;
        let mut last = e.last_step_at.unwrap_or(e.enrolled_at);
        loop {
            let Some(s) = seq.steps.get(step) else {
                self.store
                    .update_enrollment(e.id, "completed", step as i32, None, None, Some(last), auto_seen)
                    .await?;
                return Ok(progress);
            };
            // A step removed from the file since this enrollment started never fires.
            if !current.step_fingerprints.contains(&seq.step_fingerprints[step]) {
                step += 1;
                continue;
            }
            match s {
                Step::Wait(w) => {
                    let due = cal.next_send_time(cal.after_wait(last, *w), key ^ step as u64);
                    if due > now {
                        self.store
                            .update_enrollment(e.id, "active", step as i32 + 1, Some(due), None, Some(last), auto_seen)
                            .await?;
                        return Ok(progress);
                    }
                    step += 1;
                }
                Step::Task => {
                    let ctx = self.render_context(&seq, &lead, rep, e.id);
                    let text = match seq.templates.render(step, "task", &ctx) {
                        Ok(t) => t,
                        Err(why) => return self.skip(e, step, &lead, &why).await,
                    };
                    let activity = NewActivity {
                        rep_id: e.rep_id.clone(),
                        kind: ActivityKind::Task,
                        occurred_at: now,
                        source: SourceKind::Sequence,
                        source_id: format!("enrollment-{}-step-{}", e.id, step + 1),
                        thread_key: None,
                        subject: Some(text),
                        direction: Direction::None,
                        lead_ids: vec![lead.id],
                        details: serde_json::json!({ "sequence": seq.id, "step": step + 1 }),
                    };
                    self.store.record_activity(&activity).await?;
                    step += 1;
                    last = now;
                }
                Step::Email { reply_to_previous, .. } => {
                    if cal.next_send_time(now, key) > now {
                        let due = cal.next_send_time(now, key ^ step as u64);
                        self.store
                            .update_enrollment(e.id, "active", step as i32, Some(due), None, Some(last), auto_seen)
                            .await?;
                        return Ok(progress);
                    }
                    if let Some(reason) = self.store.suppression_of(&lead.email).await? {
                        return self.stop(e, step, "stopped", &format!("suppressed ({reason})")).await;
                    }
                    let row = match self.store.outbox_for_step(e.id, step as i32).await? {
                        Some(r) if r.state == "sent" => {
                            step += 1;
                            last = r.sent_at.unwrap_or(now);
                            continue;
                        }
                        Some(r) if r.state == "planned" || r.state == "retry" => r,
                        Some(r) if r.state == "failed" => return self.stop(e, step, "stopped", "send_failed").await,
                        Some(r) => {
                            // `sending` or `unknown`: the crash reconciliation decides; hold.
                            warn!(enrollment = e.id, message_id = %r.message_id, state = %r.state, "step held until its delivery is known");
                            self.store
                                .update_enrollment(
                                    e.id,
                                    "held",
                                    step as i32,
                                    None,
                                    Some("delivery_unknown"),
                                    Some(last),
                                    auto_seen,
                                )
                                .await?;
                            return Ok(progress);
                        }
                        None => match self.plan_email(&seq, e, step, *reply_to_previous, &lead, rep).await? {
                            Ok(r) => r,
                            Err(why) => return self.skip(e, step, &lead, &why).await,
                        },
                    };
                    if let Some(until) = self.next_send_slot(&row.mailbox_id, limits, now).await? {
                        self.store
                            .update_enrollment(
                                e.id,
                                "active",
                                step as i32,
                                Some(until.max(now)),
                                None,
                                Some(last),
                                auto_seen,
                            )
                            .await?;
                        return Ok(progress);
                    }
                    self.store.outbox_sending(row.id).await?;
                    let outcome = smtp.send_raw(&row.sender, &row.recipient, row.raw.as_bytes()).await;
                    let now = self.store.now();
                    match outcome {
                        SendOutcome::Sent => {
                            let activity = NewActivity {
                                rep_id: e.rep_id.clone(),
                                kind: ActivityKind::EmailSent,
                                occurred_at: now,
                                source: SourceKind::Sequence,
                                source_id: row.message_id.clone(),
                                thread_key: Some(thread_root(&row)),
                                subject: Some(row.subject.clone()),
                                direction: Direction::Outbound,
                                lead_ids: vec![lead.id],
                                details: serde_json::json!({
                                    "sequence": seq.id, "version": seq.version, "step": step + 1,
                                    "enrollment": e.id, "mailbox": row.mailbox_id,
                                }),
                            };
                            self.store.outbox_sent(row.id, now, &activity).await?;
                            if let Some(imap) = append_to
                                && let Err(err) = super::sender::append_to_sent(imap, &row).await
                            {
                                warn!(message_id = %row.message_id, "sent, but copying to Sent failed: {err:#}");
                            }
                            info!(enrollment = e.id, step = step + 1, to = %row.recipient, message_id = %row.message_id, "sequence email sent");
                            progress.sent += 1;
                            step += 1;
                            last = now;
                            // One email per claim: caps and gaps are checked before the next.
                            let next = seq.steps.get(step);
                            if matches!(next, Some(Step::Email { .. })) {
                                self.store
                                    .update_enrollment(
                                        e.id,
                                        "active",
                                        step as i32,
                                        Some(now),
                                        None,
                                        Some(last),
                                        auto_seen,
                                    )
                                    .await?;
                                return Ok(progress);
                            }
                        }
                        SendOutcome::Retry(err) => {
                            let attempts = row.attempts + 1;
                            if attempts >= MAX_ATTEMPTS {
                                self.store.outbox_set_state(row.id, "failed", Some(&err), None).await?;
                                return self.stop(e, step, "stopped", "send_failed").await;
                            }
                            let delay = Duration::minutes(5 * (1i64 << (attempts - 1).min(6)));
                            let next = now + delay;
                            warn!(message_id = %row.message_id, attempts, retry_at = %next, "temporary SMTP failure: {err}");
                            self.store
                                .outbox_set_state(row.id, "retry", Some(&err), Some(next))
                                .await?;
                            self.store
                                .update_enrollment(e.id, "active", step as i32, Some(next), None, Some(last), auto_seen)
                                .await?;
                            return Ok(progress);
                        }
                        SendOutcome::RecipientRejected(err) => {
                            warn!(message_id = %row.message_id, to = %row.recipient, "recipient refused: {err}");
                            self.store.outbox_set_state(row.id, "failed", Some(&err), None).await?;
                            self.store.mark_lead_bounced(&row.recipient).await?;
                            return self.stop(e, step, "stopped", "bounced").await.map(|mut p| {
                                p.sent = progress.sent;
                                p
                            });
                        }
                        SendOutcome::Failed(err) => {
                            warn!(message_id = %row.message_id, "SMTP refused the message: {err}");
                            self.store.outbox_set_state(row.id, "failed", Some(&err), None).await?;
                            return self.stop(e, step, "stopped", "send_failed").await;
                        }
                    }
                }
            }
        }
    }

    async fn skip(&self, e: &Enrollment, step: usize, lead: &Lead, why: &anyhow::Error) -> Result<Progress> {
        warn!(enrollment = e.id, lead = %lead.email, "lead skipped: {why:#}");
        self.stop(e, step, "skipped", &format!("{why:#}")).await
    }

    pub fn render_context(
        &self,
        seq: &Sequence,
        lead: &Lead,
        rep: Option<&RepConfig>,
        enrollment_id: i64,
    ) -> serde_json::Value {
        let unsubscribe_url = match (&self.unsubscribe_key, &self.config.sequences.unsubscribe_url) {
            (Some(k), Some(base)) => format!("{base}/unsubscribe/{}", k.token(lead.id, enrollment_id)),
            _ => String::new(),
        };
        let mut ctx = context(&ContextParts {
            lead_email: &lead.email,
            lead_name: lead.name.as_deref(),
            lead_status: &lead.status,
            lead_time_zone: lead.time_zone.as_deref(),
            lead_owner: lead.owner_rep.as_deref(),
            attributes: &lead.attributes.0,
            company_name: lead.company_name.as_deref(),
            company_domain: lead.company_domain.as_deref(),
            rep_id: rep.map(|r| r.id.as_str()).unwrap_or_default(),
            rep_name: rep.map(|r| r.name.as_str()).unwrap_or_default(),
            rep_email: rep.map(|r| r.email.as_str()).unwrap_or_default(),
            rep_team: rep.and_then(|r| r.team.as_deref()),
            sequence_name: &seq.name,
            unsubscribe_url: &unsubscribe_url,
        });
        seq.templates.apply_defaults(&mut ctx);
        ctx
    }

    /// Renders a step for a lead: (subject, text, html).
    pub fn render_email(
        &self,
        seq: &Sequence,
        step: usize,
        reply_to_previous: bool,
        previous_subject: Option<&str>,
        ctx: &serde_json::Value,
    ) -> Result<(String, String, Option<String>)> {
        let subject = if reply_to_previous && let Some(prev) = previous_subject {
            let base = prev.trim();
            let base = base
                .strip_prefix("Re: ")
                .or_else(|| base.strip_prefix("RE: "))
                .unwrap_or(base);
            format!("Re: {base}")
        } else {
            seq.templates.render(step, "subject", ctx)?.trim().to_owned()
        };
        let text = seq.templates.render(step, "body", ctx)?;
        let html = if seq.templates.has(step, "html") {
            Some(seq.templates.render(step, "html", ctx)?)
        } else {
            None
        };
        Ok((subject, text, html))
    }

    /// Renders and writes the outbox row of an email step. The inner error is a per-lead reason
    /// to skip (a missing value), the outer one a failure of the store.
    async fn plan_email(
        &self,
        seq: &Sequence,
        e: &Enrollment,
        step: usize,
        reply_to_previous: bool,
        lead: &Lead,
        rep: Option<&RepConfig>,
    ) -> Result<Result<OutboxRow, anyhow::Error>> {
        let earlier = self.store.outbox_of_enrollment(e.id).await?;
        let earlier: Vec<&OutboxRow> = earlier
            .iter()
            .filter(|r| r.state == "sent" && (r.step_index as usize) < step)
            .collect();
        let previous_subject = earlier.last().map(|r| r.subject.as_str());
        let ctx = self.render_context(seq, lead, rep, e.id);
        let (subject, text, html) = match self.render_email(seq, step, reply_to_previous, previous_subject, &ctx) {
            Ok(x) => x,
            Err(why) => return Ok(Err(why)),
        };
        let mailbox = e.mailbox_id.clone().unwrap_or_default();
        let smtp = self
            .config
            .mailboxes
            .iter()
            .find(|m| m.id == mailbox)
            .and_then(|m| m.smtp.as_ref());
        let (from_name, from) = match (rep, smtp.and_then(|s| s.from.clone())) {
            (Some(r), Some(f)) => (r.name.clone(), f),
            (Some(r), None) => (r.name.clone(), r.email.clone()),
            (None, Some(f)) => (String::new(), f),
            (None, None) => return Ok(Err(anyhow::anyhow!("no sender address for mailbox {mailbox}"))),
        };
        let thread: Vec<String> = if reply_to_previous {
            earlier.iter().map(|r| r.message_id.clone()).collect()
        } else {
            Vec::new()
        };
        let token = self.unsubscribe_key.as_ref().map(|k| k.token(lead.id, e.id));
        let https = match (&token, &self.config.sequences.unsubscribe_url) {
            (Some(t), Some(base)) => Some(format!("{base}/unsubscribe/{t}")),
            _ => None,
        };
        let mailto = match (&token, &self.config.sequences.unsubscribe_address) {
            (Some(t), Some(addr)) => Some(format!("{addr}?subject=unsubscribe%20{t}")),
            _ => None,
        };
        let message_id = new_message_id(&from);
        let raw = match build_message(&OutgoingEmail {
            message_id: &message_id,
            from_name: &from_name,
            from: &from,
            to_name: lead.name.as_deref(),
            to: &lead.email,
            subject: &subject,
            text: &text,
            html: html.as_deref(),
            date: self.store.now(),
            thread: &thread,
            unsubscribe_https: https.as_deref(),
            unsubscribe_mailto: mailto.as_deref(),
        }) {
            Ok(r) => r,
            Err(why) => return Ok(Err(why)),
        };
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let row = self
            .store
            .plan_outbox(&NewOutbox {
                enrollment_id: e.id,
                step_index: step as i32,
                mailbox_id: &mailbox,
                message_id: &message_id,
                recipient: &lead.email,
                subject: &subject,
                raw: &raw,
                sender: &from,
            })
            .await?;
        Ok(Ok(row))
    }
}

/// The first Message-ID of a sent message's thread (its first `References` entry, else its own
/// id): mail capture keys threads the same way.
pub(crate) fn thread_root(row: &OutboxRow) -> String {
    row.raw
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("References: "))
        .and_then(|r| r.split_whitespace().next())
        .map(|r| r.trim_matches(['<', '>']).to_owned())
        .unwrap_or_else(|| row.message_id.clone())
}
