//! Calendar sources: ICS feeds (URL or file), CalDAV and Google Calendar. Each reads what
//! changed since its last sync as event instances grouped by the object they came from (an
//! ICS feed is one object, a CalDAV resource another, a Google event a third) and hands them
//! to [`CalendarIngestor::apply`], which compares them with what was stored, asks the meeting
//! matcher which activities that makes, and records activities, occurrences, object ETags and
//! the sync cursor in one transaction.

pub mod caldav;
pub mod feed;
pub mod google;
pub mod ics;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use crate::activity::{Direction, NewActivity, SourceKind};
use crate::config::RepConfig;
use crate::matcher::MailMatcher;
use crate::matcher::meeting::{CurrentMeeting, KnownMeeting, meeting_activities, meeting_parties};
use crate::sources::mail::{MatchRules, NewLeads};
use crate::store::{Store, StoredMeeting, SyncCursor};
use ics::{EventInstance, Window};

/// What one sync read from a calendar.
#[derive(Debug, Clone, Default)]
pub struct CalendarChanges {
    /// Every object of the calendar is listed: an object stored earlier and not listed is gone.
    pub complete: bool,
    /// Objects read, each with its ETag and the instances (inside the window) it holds.
    pub updated: Vec<CalendarObject>,
    /// Objects deleted on the server.
    pub deleted: Vec<String>,
}

/// One calendar object (CalDAV resource, Google event, ICS feed).
#[derive(Debug, Clone)]
pub struct CalendarObject {
    pub href: String,
    pub etag: Option<String>,
    pub instances: Vec<EventInstance>,
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarStats {
    pub objects: usize,
    pub instances: usize,
    /// Activities recorded (not counting ones that existed already).
    pub activities: usize,
}

/// Stores what the sources of one calendar find.
pub struct CalendarIngestor {
    pub store: Store,
    pub calendar_id: String,
    pub rep_id: String,
    pub rep_time_zone: chrono_tz::Tz,
    rep_addresses: Vec<String>,
    rules: Arc<MatchRules>,
}

impl CalendarIngestor {
    pub fn new(store: Store, calendar_id: &str, rep: &RepConfig, rules: Arc<MatchRules>) -> Self {
        CalendarIngestor {
            store,
            calendar_id: calendar_id.to_owned(),
            rep_id: rep.id.clone(),
            rep_time_zone: rep.time_zone,
            rep_addresses: rep.addresses().map(str::to_owned).collect(),
            rules,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.store.now()
    }

    /// Logs problems found in a calendar object; never their content beyond a short excerpt.
    pub fn report_problems(&self, href: &str, problems: &[String]) {
        for p in problems {
            warn!(calendar = %self.calendar_id, object = %href, "{p}");
        }
    }

    /// Records a completed sync as healthy.
    pub async fn synced(&self, kind: &str, stats: &CalendarStats) {
        if stats.activities > 0 {
            info!(
                calendar = %self.calendar_id,
                objects = stats.objects,
                instances = stats.instances,
                activities = stats.activities,
                "calendar synced"
            );
        }
        self.store.record_healthy(&self.calendar_id, kind).await;
    }

    /// Compares `changes` with what was stored, records the activities that makes and the new
    /// state, and moves `cursor`, in one transaction. `window` is the span the source read:
    /// stored occurrences outside it are not taken for deleted.
    pub async fn apply(
        &self,
        changes: &CalendarChanges,
        window: &Window,
        cursor: Option<&SyncCursor>,
    ) -> Result<CalendarStats> {
        let now = self.store.now();
        let stored = self.store.calendar_meetings(&self.calendar_id).await?;
        let mut known: HashMap<(String, String), StoredMeeting> = stored
            .into_iter()
            .map(|m| ((m.uid.clone(), m.instance.clone()), m))
            .collect();

        // Match every instance read; dedupe (uid, instance) across objects, last one wins.
        let mut current: HashMap<(String, String), (&CalendarObject, &EventInstance)> = HashMap::new();
        for obj in &changes.updated {
            for inst in &obj.instances {
                current.insert((inst.uid.clone(), inst.instance.clone()), (obj, inst));
            }
        }
        let mut parties = HashMap::new();
        {
            let index = self.rules.index.read().await;
            let matcher = MailMatcher {
                domains: &self.rules.domains,
                index: &index,
                strip_plus_tags: self.rules.strip_plus_tags,
                unknown_senders: self.rules.unknown_senders,
            };
            for (key, (_, inst)) in &current {
                let excluded = inst
                    .organizer
                    .iter()
                    .chain(inst.attendees.iter().map(|a| &a.email))
                    .any(|a| self.rules.privacy.excludes(a));
                let mut p = meeting_parties(&matcher, &self.rep_addresses, inst);
                if excluded {
                    p.leads.clear();
                }
                parties.insert(key.clone(), p);
            }
        }

        // Occurrences that are gone: in a deleted object, in an object read again without
        // them, or (for a complete listing) in an object no longer listed.
        let read_hrefs: HashSet<&str> = changes.updated.iter().map(|o| o.href.as_str()).collect();
        let deleted_hrefs: HashSet<&str> = changes.deleted.iter().map(String::as_str).collect();
        let gone: Vec<(String, String)> = known
            .iter()
            .filter(|(key, m)| {
                if current.contains_key(*key) {
                    return false;
                }
                let in_window = window.overlaps(m.start_at, m.end_at);
                deleted_hrefs.contains(m.resource.as_str())
                    || (in_window && (read_hrefs.contains(m.resource.as_str()) || changes.complete))
            })
            .map(|(k, _)| k.clone())
            .collect();

        let mut tx = self.store.begin().await?;
        let mut activities = Vec::new();
        let mut rows = Vec::new();
        let mut new_leads = NewLeads::default();
        let mut keys: Vec<&(String, String)> = current.keys().collect();
        keys.sort();
        for key in keys {
            let (obj, inst) = current[key];
            let p = &parties[key];
            let mut lead_ids = Vec::new();
            for l in &p.leads {
                let id = new_leads.id_for(&mut tx, &self.rules, l, &self.rep_id, now).await?;
                if !lead_ids.contains(&id) {
                    lead_ids.push(id);
                }
            }
            let prior = known.remove(key);
            let unchanged_before = prior.clone();
            let prior_view = prior.as_ref().map(known_view);
            let cur = CurrentMeeting {
                start: inst.start,
                end: inst.end,
                cancelled: inst.cancelled,
                declined: p.rep_declined,
                has_leads: !lead_ids.is_empty(),
                created: inst.created,
            };
            let kinds = meeting_activities(prior_view.as_ref(), Some(&cur), now);
            let mut held = prior.as_ref().is_some_and(|m| m.held);
            for (kind, at) in kinds {
                held |= kind == crate::activity::ActivityKind::MeetingHeld;
                activities.push(self.activity(inst, kind, at, &lead_ids, obj.href.as_str()));
            }
            debug!(calendar = %self.calendar_id, uid = %inst.uid, instance = %inst.instance, leads = lead_ids.len(), "meeting read");
            let row = StoredMeeting {
                calendar_id: self.calendar_id.clone(),
                uid: inst.uid.clone(),
                instance: inst.instance.clone(),
                resource: obj.href.clone(),
                rep_id: self.rep_id.clone(),
                start_at: inst.start,
                end_at: inst.end,
                cancelled: inst.cancelled,
                declined: p.rep_declined,
                lead_ids: serde_json::to_string(&lead_ids).unwrap_or_else(|_| "[]".into()),
                held,
            };
            // Unchanged occurrences are not written again (a feed is read whole every time).
            if unchanged_before.as_ref() != Some(&row) {
                rows.push(row);
            }
        }
        for key in &gone {
            let Some(mut m) = known.remove(key) else { continue };
            if m.cancelled {
                continue;
            }
            let lead_ids = m.leads();
            for (kind, at) in meeting_activities(Some(&known_view(&m)), None, now) {
                activities.push(self.stored_activity(&m, kind, at, &lead_ids));
            }
            m.cancelled = true;
            rows.push(m);
        }
        // Occurrences not read this time (an unchanged object) whose end has now passed.
        for m in known.values_mut() {
            let view = known_view(m);
            if view.held || view.cancelled || view.declined || !view.has_leads || m.end_at > now {
                continue;
            }
            let cur = CurrentMeeting {
                start: m.start_at,
                end: m.end_at,
                cancelled: false,
                declined: false,
                has_leads: true,
                created: None,
            };
            let lead_ids = m.leads();
            for (kind, at) in meeting_activities(Some(&view), Some(&cur), now) {
                activities.push(self.stored_activity(m, kind, at, &lead_ids));
            }
            m.held = true;
            rows.push(m.clone());
        }

        let mut stats = CalendarStats {
            objects: changes.updated.len(),
            instances: current.len(),
            activities: 0,
        };
        stats.activities = tx
            .record_activities(&activities, now)
            .await?
            .iter()
            .filter(|id| id.is_some())
            .count();
        tx.put_meetings(&rows, now).await?;
        let etags: Vec<(String, Option<String>)> = changes
            .updated
            .iter()
            .map(|o| (o.href.clone(), o.etag.clone()))
            .collect();
        tx.put_calendar_etags(&self.calendar_id, &etags, now).await?;
        tx.delete_calendar_resources(&self.calendar_id, &changes.deleted)
            .await?;
        if let Some(c) = cursor {
            tx.put_cursor(c, now).await?;
        }
        tx.commit().await?;
        new_leads.publish(&self.rules).await;
        Ok(stats)
    }

    fn activity(
        &self,
        inst: &EventInstance,
        kind: crate::activity::ActivityKind,
        at: DateTime<Utc>,
        lead_ids: &[i64],
        href: &str,
    ) -> NewActivity {
        NewActivity {
            rep_id: self.rep_id.clone(),
            kind,
            occurred_at: at,
            source: SourceKind::Calendar,
            source_id: inst.source_id(),
            thread_key: None,
            subject: inst.summary.clone().filter(|_| self.rules.privacy.store_subjects),
            direction: Direction::None,
            lead_ids: lead_ids.to_vec(),
            details: serde_json::json!({
                "calendar": self.calendar_id,
                "object": href,
                "start": inst.start,
                "end": inst.end,
            }),
        }
    }

    fn stored_activity(
        &self,
        m: &StoredMeeting,
        kind: crate::activity::ActivityKind,
        at: DateTime<Utc>,
        lead_ids: &[i64],
    ) -> NewActivity {
        let source_id = if m.instance.is_empty() {
            m.uid.clone()
        } else {
            format!("{} {}", m.uid, m.instance)
        };
        NewActivity {
            rep_id: self.rep_id.clone(),
            kind,
            occurred_at: at,
            source: SourceKind::Calendar,
            source_id,
            thread_key: None,
            subject: None,
            direction: Direction::None,
            lead_ids: lead_ids.to_vec(),
            details: serde_json::json!({
                "calendar": self.calendar_id,
                "object": m.resource,
                "start": m.start_at,
                "end": m.end_at,
            }),
        }
    }
}

fn known_view(m: &StoredMeeting) -> KnownMeeting {
    KnownMeeting {
        start: m.start_at,
        end: m.end_at,
        cancelled: m.cancelled,
        declined: m.declined,
        has_leads: m.lead_ids != "[]",
        held: m.held,
    }
}
