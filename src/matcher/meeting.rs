//! Deciding what a meeting is to a rep: which leads it concerns (the mail rules: internal,
//! free-mail, blocked and company domains), and which activities an occurrence produces now,
//! given what was known about it before. Pure: the store and the sources hand it data.
//!
//! Kinds, per (rep, event UID, instance):
//! - `meeting_booked`: the first time a future, not cancelled meeting with a lead is seen;
//!   at the event's creation time when known (and not in the future), else when seen.
//! - `meeting_held`: its end has passed, it is not cancelled, and the rep has not declined;
//!   at its end.
//! - `meeting_cancelled`: a meeting seen earlier, not yet over, is now cancelled or gone.
//! - `meeting_rescheduled`: a meeting seen earlier, not yet over, now starts at another time.
//!
//! Only meetings with at least one matched external participant count.

use chrono::{DateTime, Utc};

use super::{LeadMatch, MailMatcher};
use crate::activity::ActivityKind;
use crate::sources::calendar::ics::{EventInstance, PartStat};

/// Who a meeting is with, seen from the rep whose calendar holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingParties {
    pub leads: Vec<LeadMatch>,
    /// The rep answered the invitation with a no.
    pub rep_declined: bool,
}

/// Matches the organizer and attendees of `inst` to leads, skipping the rep's own addresses.
pub fn meeting_parties(matcher: &MailMatcher<'_>, rep_addresses: &[String], inst: &EventInstance) -> MeetingParties {
    let is_rep = |a: &str| rep_addresses.iter().any(|r| r == a);
    let mut leads: Vec<LeadMatch> = Vec::new();
    let people = inst
        .organizer
        .iter()
        .map(String::as_str)
        .chain(inst.attendees.iter().map(|a| a.email.as_str()));
    for a in people {
        if is_rep(a) {
            continue;
        }
        if let Some(m) = matcher.match_address(a)
            && !leads.iter().any(|l| l.address() == m.address())
        {
            leads.push(m);
        }
    }
    let rep_declined = inst
        .attendees
        .iter()
        .any(|a| is_rep(&a.email) && a.partstat == PartStat::Declined);
    MeetingParties { leads, rep_declined }
}

/// What was stored about an occurrence at the last sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMeeting {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub cancelled: bool,
    pub declined: bool,
    pub has_leads: bool,
    /// `meeting_held` is already recorded.
    pub held: bool,
}

/// An occurrence as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentMeeting {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub cancelled: bool,
    pub declined: bool,
    pub has_leads: bool,
    pub created: Option<DateTime<Utc>>,
}

/// The activities an occurrence produces at `now`: `current` is `None` when it disappeared
/// from the calendar. Each comes with the time it happened.
pub fn meeting_activities(
    prior: Option<&KnownMeeting>,
    current: Option<&CurrentMeeting>,
    now: DateTime<Utc>,
) -> Vec<(ActivityKind, DateTime<Utc>)> {
    let mut out = Vec::new();
    let live_before = prior.filter(|p| !p.cancelled && p.has_leads && p.end > now);
    match current {
        Some(c) if !c.cancelled => {
            if !c.has_leads {
                return out;
            }
            match prior {
                None | Some(KnownMeeting { has_leads: false, .. }) if c.start > now => {
                    let at = c.created.filter(|t| *t <= now).unwrap_or(now);
                    out.push((ActivityKind::MeetingBooked, at));
                }
                _ => {}
            }
            if let Some(p) = live_before
                && p.start != c.start
            {
                out.push((ActivityKind::MeetingRescheduled, now));
            }
            if c.end <= now && !c.declined && !prior.is_some_and(|p| p.held) {
                out.push((ActivityKind::MeetingHeld, c.end));
            }
        }
        // Cancelled, or deleted from the calendar.
        _ => {
            if live_before.is_some() {
                out.push((ActivityKind::MeetingCancelled, now));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{DomainRules, LeadIndex};
    use crate::sources::calendar::ics::Attendee;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 10, 12, 0, 0).unwrap()
    }

    fn current(start_in_hours: i64) -> CurrentMeeting {
        CurrentMeeting {
            start: now() + Duration::hours(start_in_hours),
            end: now() + Duration::hours(start_in_hours + 1),
            cancelled: false,
            declined: false,
            has_leads: true,
            created: Some(now() - Duration::days(3)),
        }
    }

    fn known(c: &CurrentMeeting) -> KnownMeeting {
        KnownMeeting {
            start: c.start,
            end: c.end,
            cancelled: c.cancelled,
            declined: c.declined,
            has_leads: c.has_leads,
            held: false,
        }
    }

    #[test]
    fn future_meeting_is_booked_at_creation_then_held_at_its_end() {
        let c = current(24);
        assert_eq!(
            meeting_activities(None, Some(&c), now()),
            vec![(ActivityKind::MeetingBooked, now() - Duration::days(3))]
        );
        // Seen again: nothing new.
        assert!(meeting_activities(Some(&known(&c)), Some(&c), now()).is_empty());
        let later = now() + Duration::hours(30);
        assert_eq!(
            meeting_activities(Some(&known(&c)), Some(&c), later),
            vec![(ActivityKind::MeetingHeld, c.end)]
        );
    }

    #[test]
    fn a_past_meeting_first_seen_is_only_held() {
        let c = current(-5);
        assert_eq!(
            meeting_activities(None, Some(&c), now()),
            vec![(ActivityKind::MeetingHeld, c.end)]
        );
    }

    #[test]
    fn declined_or_without_leads_is_not_held() {
        let mut c = current(-5);
        c.declined = true;
        assert!(meeting_activities(None, Some(&c), now()).is_empty());
        let mut c = current(5);
        c.has_leads = false;
        assert!(meeting_activities(None, Some(&c), now()).is_empty());
    }

    #[test]
    fn moved_and_cancelled() {
        let c = current(24);
        let mut moved = c.clone();
        moved.start += Duration::hours(2);
        moved.end += Duration::hours(2);
        assert_eq!(
            meeting_activities(Some(&known(&c)), Some(&moved), now()),
            vec![(ActivityKind::MeetingRescheduled, now())]
        );
        let mut gone = c.clone();
        gone.cancelled = true;
        assert_eq!(
            meeting_activities(Some(&known(&c)), Some(&gone), now()),
            vec![(ActivityKind::MeetingCancelled, now())]
        );
        assert_eq!(
            meeting_activities(Some(&known(&c)), None, now()),
            vec![(ActivityKind::MeetingCancelled, now())]
        );
        // Cancelled when first seen, or after it was over: nothing.
        assert!(meeting_activities(None, Some(&gone), now()).is_empty());
        let past = current(-5);
        assert!(meeting_activities(Some(&known(&past)), None, now()).is_empty());
    }

    #[test]
    fn parties_follow_the_mail_rules() {
        let domains = DomainRules::new(&["example.com".into()], &[], &[]);
        let index = LeadIndex::new(
            [("sara@acme.example".to_string(), 7), ("nina@gmail.com".to_string(), 8)],
            [("acme.example".to_string(), 1)],
        );
        let m = MailMatcher {
            domains: &domains,
            index: &index,
            strip_plus_tags: true,
            unknown_senders: crate::config::UnknownSenders::Ignore,
        };
        let att = |e: &str, p| Attendee {
            email: e.into(),
            partstat: p,
        };
        let inst = EventInstance {
            uid: "u".into(),
            instance: String::new(),
            start: now(),
            end: now(),
            all_day: false,
            summary: None,
            cancelled: false,
            organizer: Some("alice@example.com".into()),
            attendees: vec![
                att("alice@example.com", PartStat::Declined),
                att("dave@example.com", PartStat::Accepted),
                att("sara+x@acme.example", PartStat::Accepted),
                att("new.person@acme.example", PartStat::NeedsAction),
                att("someone@yahoo.com", PartStat::Accepted),
                att("nina@gmail.com", PartStat::Accepted),
            ],
            created: None,
        };
        let p = meeting_parties(&m, &["alice@example.com".into()], &inst);
        assert!(p.rep_declined);
        let addrs: Vec<&str> = p.leads.iter().map(|l| l.address()).collect();
        assert_eq!(
            addrs,
            vec!["sara@acme.example", "new.person@acme.example", "nina@gmail.com"]
        );
    }
}
