//! From fetched messages to stored activities, one batch per transaction: decide each message
//! with the matcher, create the leads it found by domain, record activities (exactly once by
//! their natural key), bounces, the `mail_seen` rows and the folder's cursor together, so a
//! crash can neither lose a message nor count it twice.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use foldhash::HashSet;
use tokio::sync::RwLock;
use tracing::{debug, warn};

use super::MailHeaders;
use crate::activity::{ActivityKind, NewActivity, SourceKind};
use crate::address;
use crate::config::{Config, PrivacyConfig, RepConfig, UnknownSenders};
use crate::matcher::{DomainClass, DomainRules, LeadIndex, LeadMatch, MailDecision, MailMatcher, RepView, SkipReason};
use crate::store::{NewSeenMail, Store, SyncCursor, Tx};

/// The Message-IDs of the outbound mail a sync has decided so far (see [`Ingestor::decide`]).
/// foldhash, not the standard library's SipHash: it is asked about every message.
pub type SentBefore = HashSet<String>;

/// One message as a source read it.
#[derive(Debug, Clone)]
pub struct FetchedMail {
    pub folder: String,
    /// IMAP: "<uidvalidity>:<uid>"; Maildir: the file's unique name.
    pub item_key: String,
    /// `None` when the message could not be parsed at all: it is recorded as unreadable.
    pub headers: Option<MailHeaders>,
    /// When the server (or the file system) received it.
    pub internal_date: Option<DateTime<Utc>>,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub seen: usize,
    pub counted: usize,
    /// Counted, but the activity existed already (the same message in another folder).
    pub duplicates: usize,
    /// Activities recorded before that this batch linked to a lead they were not linked to (a
    /// message matched again after a lead import, whose activity gains the new lead).
    pub linked: usize,
    pub skipped: usize,
    pub unreadable: usize,
}

impl std::ops::AddAssign for IngestStats {
    fn add_assign(&mut self, o: Self) {
        self.seen += o.seen;
        self.counted += o.counted;
        self.duplicates += o.duplicates;
        self.linked += o.linked;
        self.skipped += o.skipped;
        self.unreadable += o.unreadable;
    }
}

/// The matching rules of one deployment, shared by every mailbox task.
pub struct MatchRules {
    pub domains: DomainRules,
    pub strip_plus_tags: bool,
    pub unknown_senders: UnknownSenders,
    /// Leads and companies; reloaded by the daemon when leads change, grown by ingestion.
    pub index: RwLock<LeadIndex>,
    pub privacy: PrivacyConfig,
    /// The address of `mailto:` unsubscribes (`sequences.unsubscribe_address`): mail to it
    /// always keeps its header fields, which `sequences::unsubscribe` reads the token from.
    pub unsubscribe_address: Option<String>,
}

/// Leads made during one batch for addresses not known yet (a domain match or, by config, an
/// unknown sender): created in the batch's transaction, and added to the index every task
/// matches against once that transaction has committed.
#[derive(Default)]
pub struct NewLeads {
    ids: HashMap<String, i64>,
    created: Vec<(String, i64)>,
}

impl NewLeads {
    /// The lead id of `l`, creating the lead (owned by `rep_id`) when it is new.
    pub async fn id_for(
        &mut self,
        tx: &mut Tx,
        rules: &MatchRules,
        l: &LeadMatch,
        rep_id: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let (address, origin) = match l {
            LeadMatch::Known { id, .. } => return Ok(*id),
            LeadMatch::AtCompany { address, .. } => (address, "domain_match"),
            LeadMatch::Unknown { address } => (address, "unknown_sender"),
        };
        if let Some(id) = self.ids.get(address) {
            return Ok(*id);
        }
        let domain = address::domain_of(address);
        let company = (rules.domains.classify(domain) == DomainClass::Company).then_some(domain);
        let id = tx.ensure_lead(address, company, rep_id, origin, now).await?;
        self.ids.insert(address.clone(), id);
        self.created.push((address.clone(), id));
        Ok(id)
    }

    /// After the commit: the new leads join the shared index.
    pub async fn publish(self, rules: &MatchRules) {
        if self.created.is_empty() {
            return;
        }
        let mut index = rules.index.write().await;
        for (address, id) in self.created {
            index.add_lead(address, id);
        }
    }
}

impl MatchRules {
    pub fn new(config: &Config, index: LeadIndex) -> Self {
        MatchRules {
            domains: DomainRules::from_config(config),
            strip_plus_tags: config.matching.strip_plus_tags,
            unknown_senders: config.matching.unknown_senders,
            index: RwLock::new(index),
            privacy: config.privacy.clone(),
            unsubscribe_address: config.sequences.unsubscribe_address.clone(),
        }
    }

    /// Whether `h` went to the address of `mailto:` unsubscribes.
    fn to_unsubscribe_address(&self, h: &MailHeaders) -> bool {
        self.unsubscribe_address
            .as_deref()
            .is_some_and(|u| h.recipients().any(|r| r.eq_ignore_ascii_case(u)))
    }
}

/// Ingests the messages of one mailbox. Cheap to clone (a batch is stored by a task of its own).
#[derive(Clone)]
pub struct Ingestor {
    pub store: Store,
    pub mailbox_id: String,
    pub rep_id: String,
    rep_addresses: Vec<String>,
    rules: Arc<MatchRules>,
}

/// Picks the time an activity happened: the Date header when it is plausible, else the time
/// the server received the message, else now.
fn occurred_at(h: &MailHeaders, internal: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    match (h.date, internal) {
        (Some(d), Some(i)) if d <= i + Duration::days(1) && d >= i - Duration::days(30) => d,
        (Some(_), Some(i)) => i,
        (Some(d), None) if d <= now + Duration::days(1) => d,
        (_, Some(i)) => i,
        _ => now,
    }
}

impl Ingestor {
    pub fn new(store: Store, mailbox_id: &str, rep: &RepConfig, rules: Arc<MatchRules>) -> Self {
        Ingestor {
            store,
            mailbox_id: mailbox_id.to_owned(),
            rep_id: rep.id.clone(),
            rep_addresses: rep.addresses().map(str::to_owned).collect(),
            rules,
        }
    }

    /// Logs a completed pass and records the mailbox as healthy.
    pub async fn synced(&self, kind: &str, stats: &IngestStats) {
        if stats.seen > 0 {
            tracing::info!(
                mailbox = %self.mailbox_id,
                seen = stats.seen,
                counted = stats.counted,
                skipped = stats.skipped,
                unreadable = stats.unreadable,
                "mail synced"
            );
        }
        self.store.record_healthy(&self.mailbox_id, kind).await;
    }

    /// Processes a batch and, in the same transaction, moves `cursor` forward.
    pub async fn ingest(&self, batch: &[FetchedMail], cursor: Option<&SyncCursor>) -> Result<IngestStats> {
        self.ingest_in(self.begin().await?, batch, cursor).await
    }

    /// Processes messages seen before once more, matched against the leads known now (see
    /// `daemon::rematch_seen_mail`): as [`Ingestor::ingest`], and the activities they recorded
    /// before are linked to the leads they name now ([`IngestStats::linked`]).
    pub async fn ingest_again(&self, batch: &[FetchedMail]) -> Result<IngestStats> {
        let mut tx = self.begin().await?;
        tx.link_recorded = true;
        self.ingest_in(tx, batch, None).await
    }

    /// Decides and stores `batch` in `tx`, moves `cursor`, commits.
    async fn ingest_in(
        &self,
        mut tx: IngestTx,
        batch: &[FetchedMail],
        cursor: Option<&SyncCursor>,
    ) -> Result<IngestStats> {
        let decided = self.decide(&mut tx, batch, &mut HashSet::default()).await?;
        let stats = self.store(&mut tx, batch, decided, cursor).await?;
        self.commit(tx).await?;
        Ok(stats)
    }

    /// Starts a transaction for one or more batches (each decided, then stored, in it).
    pub async fn begin(&self) -> Result<IngestTx> {
        Ok(IngestTx {
            tx: self.store.begin_replayable().await?,
            new_leads: NewLeads::default(),
            link_recorded: false,
            messages: 0,
        })
    }

    /// Commits the batches stored in `tx`; the leads they created then join the index.
    pub async fn commit(&self, tx: IngestTx) -> Result<()> {
        tx.tx.commit().await?;
        tx.new_leads.publish(&self.rules).await;
        Ok(())
    }

    /// Decides what each message of a batch is and builds the rows to store: everything of
    /// ingesting that needs no write. Decide a batch after the batches before it are stored
    /// and the leads they created committed ([`IngestTx::created_leads`]): only then does the
    /// lead index hold them (a bounce must name one). `sent_before` holds the Message-IDs of
    /// outbound mail decided in earlier batches (a reply to one is told from plain received
    /// mail without asking the database, stored or not); this batch's outbound mail is added
    /// to it.
    pub async fn decide(
        &self,
        tx: &mut IngestTx,
        batch: &[FetchedMail],
        sent_before: &mut SentBefore,
    ) -> Result<Decided> {
        let now = self.store.now();
        // Outbound messages this rep sent earlier, for telling replies apart.
        let referenced: Vec<&str> = batch
            .iter()
            .filter_map(|m| m.headers.as_ref())
            .flat_map(|h| h.in_reply_to.iter().chain(h.references.iter()))
            .map(String::as_str)
            .filter(|id| !sent_before.contains(*id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut outbound = if referenced.is_empty() {
            HashSet::default()
        } else {
            tx.tx.outbound_message_ids(&self.rep_id, &referenced).await?
        };

        // Per message: its Message-ID, the decision, and whether its header fields are worth
        // keeping for matching again later (see `Keep`).
        let mut decisions: Vec<(String, Option<MailDecision>, bool)> = Vec::with_capacity(batch.len());
        {
            let index = self.rules.index.read().await;
            let matcher = MailMatcher {
                domains: &self.rules.domains,
                index: &index,
                strip_plus_tags: self.rules.strip_plus_tags,
                unknown_senders: self.rules.unknown_senders,
            };
            let rep = RepView {
                id: &self.rep_id,
                addresses: &self.rep_addresses,
            };
            for m in batch {
                let Some(h) = &m.headers else {
                    decisions.push((format!("unreadable-{}-{}", m.folder, m.item_key), None, false));
                    continue;
                };
                if h.from
                    .iter()
                    .map(String::as_str)
                    .chain(h.recipients())
                    .any(|a| self.rules.privacy.excludes(a))
                {
                    decisions.push((
                        "excluded".to_owned(),
                        Some(MailDecision::Skip(SkipReason::Excluded)),
                        false,
                    ));
                    continue;
                }
                let id = h.effective_message_id();
                let d = matcher.decide(&rep, h, &|mid| outbound.contains(mid) || sent_before.contains(mid));
                let worth_keeping = match &d {
                    MailDecision::Count { kind, leads, .. } => {
                        if *kind == ActivityKind::EmailSent {
                            outbound.insert(id.clone());
                        }
                        matcher.has_unlinked_participant(&rep, h, leads) || self.rules.to_unsubscribe_address(h)
                    }
                    MailDecision::Skip(_) => true,
                };
                decisions.push((id, Some(d), worth_keeping));
            }
        }
        let mut decided = Decided {
            rows: Vec::with_capacity(batch.len()),
            activities: Vec::new(),
            bounced: Vec::new(),
            skipped: 0,
            unreadable: 0,
        };
        for (m, (message_id, decision, worth_keeping)) in batch.iter().zip(decisions) {
            let (decision_name, reason, when) = match (&decision, &m.headers) {
                (
                    Some(MailDecision::Count {
                        kind,
                        direction,
                        leads,
                        bounced,
                        ..
                    }),
                    Some(h),
                ) => {
                    decided.bounced.extend(bounced.iter().cloned());
                    let when = occurred_at(h, m.internal_date, now);
                    let activity = NewActivity {
                        rep_id: self.rep_id.clone(),
                        kind: *kind,
                        occurred_at: when,
                        source: SourceKind::Mail,
                        source_id: message_id.clone(),
                        thread_key: Some(h.thread_key(&message_id)),
                        subject: h.subject.clone().filter(|_| self.rules.privacy.store_subjects),
                        direction: *direction,
                        lead_ids: Vec::new(),
                        details: if h.attachments.is_empty() {
                            serde_json::json!({ "mailbox": self.mailbox_id, "folder": m.folder })
                        } else {
                            serde_json::json!({ "mailbox": self.mailbox_id, "folder": m.folder, "attachments": h.attachments })
                        },
                    };
                    decided.activities.push((activity, leads.clone()));
                    (
                        kind.as_str(),
                        decision.as_ref().map(|d| d.explain()).unwrap_or_default(),
                        Some(when),
                    )
                }
                (Some(d), _) => {
                    decided.skipped += 1;
                    ("skipped", d.explain(), m.headers.as_ref().and_then(|h| h.date))
                }
                (None, _) => {
                    decided.unreadable += 1;
                    warn!(mailbox = %self.mailbox_id, folder = %m.folder, item = %m.item_key, "unreadable message skipped");
                    ("unreadable", "the message has no parsable header".to_owned(), None)
                }
            };
            debug!(mailbox = %self.mailbox_id, folder = %m.folder, %message_id, decision = %decision_name, "{reason}");
            // Kept for matching again later: every message with an external participant that
            // no privacy rule excludes, unless it counted and every such participant is one of
            // its leads already (most mail with leads: a later match has nothing to add) and it
            // is no `mailto:` unsubscribe.
            let keep = match (&m.headers, &decision) {
                (_, Some(MailDecision::Skip(SkipReason::Excluded))) | (None, _) => Keep::Nothing,
                (Some(_), _) if !worth_keeping => Keep::Nothing,
                (Some(h), _) => {
                    let external = h
                        .from
                        .iter()
                        .map(String::as_str)
                        .chain(h.recipients())
                        .any(|a| self.rules.domains.classify(address::domain_of(a)) != DomainClass::Internal);
                    match external {
                        false => Keep::Nothing,
                        true if self.rules.privacy.store_subjects || h.subject.is_none() => Keep::Headers,
                        true => Keep::HeadersWithoutSubject,
                    }
                }
            };
            decided.rows.push(DecidedRow {
                message_id,
                decision: decision_name,
                reason,
                occurred_at: when,
                keep,
            });
        }
        sent_before.extend(outbound);
        Ok(decided)
    }

    /// Stores a batch as [`Ingestor::decide`] decided it in `tx` and, in the same transaction,
    /// moves `cursor` forward.
    pub async fn store(
        &self,
        tx: &mut IngestTx,
        batch: &[FetchedMail],
        decided: Decided,
        cursor: Option<&SyncCursor>,
    ) -> Result<IngestStats> {
        let now = self.store.now();
        let Decided {
            rows,
            mut activities,
            bounced,
            skipped,
            unreadable,
        } = decided;
        anyhow::ensure!(
            rows.len() == batch.len(),
            "a batch of {} messages stored with the decisions of {}",
            batch.len(),
            rows.len()
        );
        let mut stats = IngestStats {
            seen: batch.len(),
            skipped,
            unreadable,
            ..Default::default()
        };
        tx.messages += batch.len();
        let IngestTx {
            tx,
            new_leads,
            link_recorded,
            ..
        } = tx;
        for (activity, leads) in &mut activities {
            for l in leads.iter() {
                activity
                    .lead_ids
                    .push(new_leads.id_for(tx, &self.rules, l, &self.rep_id, now).await?);
            }
        }
        if !bounced.is_empty() {
            tx.mark_bounced(&bounced, now).await?;
        }
        let activities: Vec<NewActivity> = activities.into_iter().map(|(a, _)| a).collect();
        let ids = tx.record_activities(&activities, now).await?;
        stats.counted = ids.iter().filter(|id| id.is_some()).count();
        stats.duplicates = ids.len() - stats.counted;
        // Matched again, a message counted before may name a lead its activity is not linked
        // to yet. (Not for every duplicate: the same message in another folder of a sync, as
        // Gmail's Sent and All Mail, names the same leads.)
        if *link_recorded && stats.duplicates > 0 {
            let recorded_before: Vec<&NewActivity> = activities
                .iter()
                .zip(&ids)
                .filter_map(|(a, id)| id.is_none().then_some(a))
                .collect();
            stats.linked = tx.link_recorded(&recorded_before).await?;
        }
        let seen_rows: Vec<_> = batch
            .iter()
            .zip(&rows)
            .map(|(m, r)| NewSeenMail {
                folder: &m.folder,
                item_key: &m.item_key,
                message_id: &r.message_id,
                decision: r.decision,
                reason: r.reason.as_str(),
                occurred_at: r.occurred_at,
                headers: m.headers.as_ref().and_then(|h| match r.keep {
                    Keep::Nothing => None,
                    Keep::Headers => Some(Cow::Borrowed(h)),
                    // A copy only when the subject has to be left out.
                    Keep::HeadersWithoutSubject => Some(Cow::Owned(MailHeaders {
                        subject: None,
                        ..h.clone()
                    })),
                }),
            })
            .collect();
        tx.insert_seen(&self.mailbox_id, &self.rep_id, &seen_rows, now).await?;
        if let Some(c) = cursor {
            tx.put_cursor(c, now).await?;
        }
        Ok(stats)
    }
}

/// A transaction that ingests batches of one mailbox ([`Ingestor::begin`]): one batch when
/// mail trickles in, several in a row during a backfill (every commit writes each changed
/// page of the indexes once more; see `imap::pipeline`).
pub struct IngestTx {
    tx: Tx,
    new_leads: NewLeads,
    messages: usize,
    /// Link activities recorded before to the leads their messages name now
    /// ([`Ingestor::ingest_again`]).
    link_recorded: bool,
}

impl IngestTx {
    /// Messages stored in this transaction so far.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Whether the batches stored created leads: until they are committed, the index that
    /// deciding matches against does not hold them.
    pub fn created_leads(&self) -> bool {
        !self.new_leads.created.is_empty()
    }
}

/// A batch whose messages are decided, with the rows to store built (see [`Ingestor::decide`]).
pub struct Decided {
    /// One per message of the batch, in the same order.
    rows: Vec<DecidedRow>,
    /// The activities to record, each with the leads it names (given ids when stored: some
    /// are new leads, created in the batch's transaction).
    activities: Vec<(NewActivity, Vec<LeadMatch>)>,
    /// Lead addresses bounces named.
    bounced: Vec<String>,
    skipped: usize,
    unreadable: usize,
}

/// What is recorded in `mail_seen` about one message.
struct DecidedRow {
    message_id: String,
    decision: &'static str,
    reason: String,
    occurred_at: Option<DateTime<Utc>>,
    keep: Keep,
}

/// Which of a message's header fields are kept for matching again later.
enum Keep {
    Nothing,
    Headers,
    HeadersWithoutSubject,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn occurred_at_prefers_a_plausible_date_header() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let received = Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 5).unwrap();
        let internal = Some(received);
        let mut h = MailHeaders {
            date: Some(Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap()),
            ..Default::default()
        };
        assert_eq!(occurred_at(&h, internal, now), h.date.unwrap());
        h.date = Some(Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(
            occurred_at(&h, internal, now),
            received,
            "a date in the future is not believed"
        );
        h.date = None;
        assert_eq!(occurred_at(&h, None, now), now);
    }
}
