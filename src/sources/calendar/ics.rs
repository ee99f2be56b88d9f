//! iCalendar text → the event instances inside a time window.
//!
//! calcard parses the text (tolerantly: folded lines, odd parameters, several VCALENDARs in one
//! stream). Recurrence is expanded here, with calcard's RRULE iterator used only on *floating*
//! local times: its own `expand_dates` shifted UTC-based series, read a UTC `UNTIL` as local
//! time, and had no end for events without DTEND. So every series is expanded as wall-clock
//! times in the event's zone and each occurrence is placed in that zone here, where DST gaps and
//! folds are handled explicitly. RDATE, EXDATE and overridden instances (RECURRENCE-ID) are
//! applied on UTC instants.
//!
//! Nothing in a file stops the rest of it: an event without UID or DTSTART, an unknown TZID, a
//! bad RRULE, a duplicate UID are each reported as a problem and the other events go on.

use std::collections::{BTreeMap, HashMap};

use calcard::common::PartialDateTime;
use calcard::common::timezone::Tz as CalTz;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarParameterName,
    ICalendarParameterValue, ICalendarParticipationStatus, ICalendarPeriod, ICalendarProperty, ICalendarRecurrenceRule,
    ICalendarStatus, ICalendarValue,
};
use calcard::{Entry, Parser};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::address;

/// The span of time a calendar is synced for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// `past_days` before `now` to `future_days` after it.
    pub fn around(now: DateTime<Utc>, past_days: u32, future_days: u32) -> Window {
        Window {
            start: now - Duration::days(i64::from(past_days)),
            end: now + Duration::days(i64::from(future_days)),
        }
    }

    /// True when `[start, end)` overlaps the window (a zero-length event counts at its start).
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        start < self.end && (end > self.start || start >= self.start)
    }
}

/// An attendee's answer to an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PartStat {
    NeedsAction,
    Accepted,
    Declined,
    Tentative,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendee {
    /// Normalized address.
    pub email: String,
    pub partstat: PartStat,
}

/// One occurrence of a meeting, as the matcher sees it, whatever calendar it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInstance {
    pub uid: String,
    /// Empty for a single event; the occurrence's original start for a recurring one
    /// (`20261103T090000Z`, or `20261103` for all-day), so a moved occurrence keeps its key.
    pub instance: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub all_day: bool,
    pub summary: Option<String>,
    pub cancelled: bool,
    /// Normalized organizer address.
    pub organizer: Option<String>,
    pub attendees: Vec<Attendee>,
    /// When the event was created, when the file says.
    pub created: Option<DateTime<Utc>>,
}

impl EventInstance {
    /// The activity's source id: one per (event UID, instance).
    pub fn source_id(&self) -> String {
        if self.instance.is_empty() {
            self.uid.clone()
        } else {
            format!("{} {}", self.uid, self.instance)
        }
    }
}

/// The instance key of an occurrence that started (originally) at `start`.
pub fn instance_key(start: DateTime<Utc>, all_day: bool, local_date: NaiveDate) -> String {
    if all_day {
        local_date.format("%Y%m%d").to_string()
    } else {
        start.format("%Y%m%dT%H%M%SZ").to_string()
    }
}

/// What came out of one iCalendar text.
#[derive(Debug, Default)]
pub struct ParsedCalendar {
    pub instances: Vec<EventInstance>,
    /// Each item that was skipped or repaired, and why (logged by the caller).
    pub problems: Vec<String>,
}

/// Upper bound of occurrences generated for one series, against runaway rules.
const MAX_OCCURRENCES: usize = 20_000;

/// Parses `text` and returns every event instance overlapping `window`. Floating times (no
/// zone) are read in `default_tz`, the rep's zone.
pub fn parse_ics(text: &str, window: &Window, default_tz: Tz) -> ParsedCalendar {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = ParsedCalendar::default();
    let mut parser = Parser::new(text);
    loop {
        match parser.entry() {
            Entry::ICalendar(ical) => expand_calendar(&ical, window, default_tz, &mut out),
            Entry::Eof => break,
            Entry::InvalidLine(line) => out.problems.push(format!("invalid line skipped: {}", clip(&line))),
            Entry::UnexpectedComponentEnd { expected, found } => out.problems.push(format!(
                "component end mismatch: expected {expected:?}, found {found:?}"
            )),
            Entry::UnterminatedComponent(c) => out.problems.push(format!("unterminated component {c}")),
            Entry::TooManyComponents => {
                out.problems
                    .push("too many components; the rest of the file is ignored".into());
                break;
            }
            Entry::VCard(_) => out.problems.push("a vCard in a calendar file skipped".into()),
            _ => out.problems.push("unrecognised entry skipped".into()),
        }
    }
    out
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A time as written: local wall-clock time in a zone, or an absolute instant.
#[derive(Debug, Clone, Copy)]
struct When {
    /// Wall-clock time in `tz` (midnight for a date).
    local: NaiveDateTime,
    tz: Tz,
    utc: DateTime<Utc>,
    date_only: bool,
}

/// One VEVENT's fields, read but not yet expanded.
struct RawEvent {
    uid: String,
    start: When,
    end: Option<When>,
    duration: Option<Duration>,
    rrule: Option<ICalendarRecurrenceRule>,
    rdates: Vec<When>,
    exdates: Vec<When>,
    recurrence_id: Option<When>,
    sequence: i64,
    summary: Option<String>,
    cancelled: bool,
    organizer: Option<String>,
    attendees: Vec<Attendee>,
    created: Option<DateTime<Utc>>,
}

/// Places a wall-clock time in a zone: the earlier of two in a fold, shifted past a gap.
pub fn localize(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local).earliest() {
        Some(t) => t.with_timezone(&Utc),
        // In a DST gap: the wall clock jumps forward, so does the event.
        None => match tz.from_local_datetime(&(local + Duration::hours(1))).earliest() {
            Some(t) => t.with_timezone(&Utc),
            None => Utc.from_utc_datetime(&local),
        },
    }
}

struct Zones<'a> {
    resolver: calcard::icalendar::timezone::TzResolver<&'a str>,
    default: Tz,
}

impl Zones<'_> {
    /// The zone named by TZID (IANA, Windows, or a VTIMEZONE calcard recognises).
    fn zone(&self, tzid: Option<&str>) -> Result<Tz, String> {
        let Some(id) = tzid else { return Ok(self.default) };
        match self.resolver.resolve(id) {
            Some(CalTz::Tz(tz)) => Ok(tz),
            Some(CalTz::Floating) => Ok(self.default),
            Some(CalTz::Fixed(off)) => {
                // A fixed offset: use the matching Etc zone when there is one.
                let secs = off.local_minus_utc();
                if secs % 3600 == 0 {
                    let h = -secs / 3600;
                    let name = if h == 0 {
                        "Etc/UTC".to_string()
                    } else {
                        format!("Etc/GMT{h:+}")
                    };
                    name.parse::<Tz>().map_err(|_| format!("unsupported offset zone {id}"))
                } else {
                    Err(format!("unsupported offset zone {id}"))
                }
            }
            None => Err(format!("unknown TZID `{id}`")),
        }
    }

    fn when(&self, pdt: &PartialDateTime, tzid: Option<&str>) -> Result<When, String> {
        let dt = pdt.to_date_time().ok_or("invalid date-time")?;
        let date_only = pdt.hour.is_none();
        if let Some(offset) = dt.offset {
            let utc = Utc.from_utc_datetime(&(dt.date_time - Duration::seconds(i64::from(offset.local_minus_utc()))));
            // An absolute instant: its wall clock in the event's zone, for recurrence.
            let tz = self.zone(tzid).unwrap_or(chrono_tz::UTC);
            let tz = if offset.local_minus_utc() == 0 && tzid.is_none() {
                chrono_tz::UTC
            } else {
                tz
            };
            return Ok(When {
                local: utc.with_timezone(&tz).naive_local(),
                tz,
                utc,
                date_only,
            });
        }
        let tz = if date_only { self.default } else { self.zone(tzid)? };
        Ok(When {
            local: dt.date_time,
            tz,
            utc: localize(tz, dt.date_time),
            date_only,
        })
    }
}

fn first_date(e: &ICalendarEntry) -> Option<&PartialDateTime> {
    e.values.iter().find_map(|v| match v {
        ICalendarValue::PartialDateTime(p) => Some(p.as_ref()),
        _ => None,
    })
}

fn to_std_duration(d: &calcard::icalendar::ICalendarDuration) -> Duration {
    let secs = i64::from(d.weeks) * 7 * 86400
        + i64::from(d.days) * 86400
        + i64::from(d.hours) * 3600
        + i64::from(d.minutes) * 60
        + i64::from(d.seconds);
    if d.neg {
        -Duration::seconds(secs)
    } else {
        Duration::seconds(secs)
    }
}

fn calendar_address(e: &ICalendarEntry) -> Option<String> {
    let raw = e.values.first().and_then(|v| v.as_text())?;
    let raw = calcard::icalendar::utils::strip_mailto_scheme(raw.trim());
    address::normalize(raw).ok()
}

fn read_event(comp: &ICalendarComponent, zones: &Zones<'_>) -> Result<RawEvent, String> {
    let uid = comp
        .uid()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or("an event without UID")?
        .to_owned();
    let mut start = None;
    let mut end = None;
    let mut duration = None;
    let mut rrule = None;
    let mut rdates = Vec::new();
    let mut exdates = Vec::new();
    let mut recurrence_id = None;
    let mut sequence = 0;
    let mut summary = None;
    let mut cancelled = false;
    let mut organizer = None;
    let mut attendees = Vec::new();
    let mut created = None;
    for e in &comp.entries {
        let tzid = e.tz_id();
        match &e.name {
            ICalendarProperty::Dtstart => {
                let p = first_date(e).ok_or("DTSTART is not a date")?;
                start = Some(zones.when(p, tzid).map_err(|m| format!("event {uid}: DTSTART: {m}"))?);
            }
            ICalendarProperty::Dtend => {
                if let Some(p) = first_date(e) {
                    end = zones.when(p, tzid).ok();
                }
            }
            ICalendarProperty::Duration => {
                if let Some(ICalendarValue::Duration(d)) = e.values.first() {
                    duration = Some(to_std_duration(d));
                }
            }
            ICalendarProperty::Rrule => {
                if let Some(ICalendarValue::RecurrenceRule(r)) = e.values.first() {
                    rrule = Some((**r).clone());
                }
            }
            ICalendarProperty::Rdate | ICalendarProperty::Exdate => {
                let list = if e.name == ICalendarProperty::Rdate {
                    &mut rdates
                } else {
                    &mut exdates
                };
                for v in &e.values {
                    let p = match v {
                        ICalendarValue::PartialDateTime(p) => Some(p.as_ref()),
                        ICalendarValue::Period(ICalendarPeriod::Range { start, .. })
                        | ICalendarValue::Period(ICalendarPeriod::Duration { start, .. }) => Some(start),
                        _ => None,
                    };
                    if let Some(w) = p.and_then(|p| zones.when(p, tzid).ok()) {
                        list.push(w);
                    }
                }
            }
            ICalendarProperty::RecurrenceId => {
                if let Some(p) = first_date(e) {
                    recurrence_id = Some(
                        zones
                            .when(p, tzid)
                            .map_err(|m| format!("event {uid}: RECURRENCE-ID: {m}"))?,
                    );
                }
            }
            ICalendarProperty::Sequence => {
                sequence = e.values.first().and_then(|v| v.as_integer()).unwrap_or(0);
            }
            ICalendarProperty::Summary => summary = e.values.first().and_then(|v| v.as_text()).map(str::to_owned),
            ICalendarProperty::Status => {
                cancelled = matches!(
                    e.values.first(),
                    Some(ICalendarValue::Status(ICalendarStatus::Cancelled))
                ) || e
                    .values
                    .first()
                    .and_then(|v| v.as_text())
                    .is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED"));
            }
            ICalendarProperty::Organizer => organizer = calendar_address(e),
            ICalendarProperty::Attendee => {
                if let Some(email) = calendar_address(e) {
                    let partstat = match e.parameter(&ICalendarParameterName::Partstat) {
                        Some(ICalendarParameterValue::Partstat(p)) => match p {
                            ICalendarParticipationStatus::Accepted => PartStat::Accepted,
                            ICalendarParticipationStatus::Declined => PartStat::Declined,
                            ICalendarParticipationStatus::Tentative => PartStat::Tentative,
                            ICalendarParticipationStatus::NeedsAction => PartStat::NeedsAction,
                            _ => PartStat::Other,
                        },
                        None => PartStat::NeedsAction,
                        Some(_) => PartStat::Other,
                    };
                    attendees.push(Attendee { email, partstat });
                }
            }
            ICalendarProperty::Created => {
                created = first_date(e).and_then(|p| zones.when(p, tzid).ok()).map(|w| w.utc);
            }
            _ => {}
        }
    }
    let start = match (start, &recurrence_id) {
        (Some(s), _) => s,
        // An override may leave DTSTART out: it then starts when the occurrence would have.
        (None, Some(r)) => *r,
        (None, None) => return Err(format!("event {uid} has no DTSTART")),
    };
    Ok(RawEvent {
        uid,
        start,
        end,
        duration,
        rrule,
        rdates,
        exdates,
        recurrence_id,
        sequence,
        summary,
        cancelled,
        organizer,
        attendees,
        created,
    })
}

impl RawEvent {
    /// How long each occurrence lasts: DTEND − DTSTART, else DURATION, else a day for an
    /// all-day event and nothing for a timed one (RFC 5545 §3.6.1).
    fn length(&self) -> Duration {
        if let Some(end) = &self.end {
            let d = if self.start.date_only {
                end.local - self.start.local
            } else {
                end.utc - self.start.utc
            };
            if d >= Duration::zero() {
                return d;
            }
        }
        match self.duration {
            Some(d) if d >= Duration::zero() => d,
            _ if self.start.date_only => Duration::days(1),
            _ => Duration::zero(),
        }
    }

    /// Start and end of an occurrence whose wall-clock start is `local`.
    fn place(&self, local: NaiveDateTime) -> (DateTime<Utc>, DateTime<Utc>) {
        let len = self.length();
        if self.start.date_only {
            // All-day: the days are the rep's days; the end is counted in days too.
            (localize(self.start.tz, local), localize(self.start.tz, local + len))
        } else {
            let s = localize(self.start.tz, local);
            (s, s + len)
        }
    }

    fn instance(&self, key: String, start: DateTime<Utc>, end: DateTime<Utc>) -> EventInstance {
        EventInstance {
            uid: self.uid.clone(),
            instance: key,
            start,
            end,
            all_day: self.start.date_only,
            summary: self.summary.clone(),
            cancelled: self.cancelled,
            organizer: self.organizer.clone(),
            attendees: self.attendees.clone(),
            created: self.created,
        }
    }

    fn key_of(&self, w: &When) -> String {
        instance_key(w.utc, self.start.date_only, w.local.date())
    }
}

fn expand_calendar(ical: &ICalendar, window: &Window, default_tz: Tz, out: &mut ParsedCalendar) {
    let zones = Zones {
        resolver: ical.build_tz_resolver().with_default(CalTz::Tz(default_tz)),
        default: default_tz,
    };
    let mut masters: BTreeMap<String, RawEvent> = BTreeMap::new();
    let mut overrides: HashMap<String, Vec<RawEvent>> = HashMap::new();
    for comp in &ical.components {
        if comp.component_type != ICalendarComponentType::VEvent {
            continue;
        }
        let ev = match read_event(comp, &zones) {
            Ok(ev) => ev,
            Err(problem) => {
                out.problems.push(format!("event skipped: {problem}"));
                continue;
            }
        };
        if ev.recurrence_id.is_some() {
            overrides.entry(ev.uid.clone()).or_default().push(ev);
            continue;
        }
        match masters.get(&ev.uid) {
            Some(old) => {
                out.problems.push(format!(
                    "duplicate UID {}: the copy with the higher SEQUENCE (or the later one) is kept",
                    ev.uid
                ));
                if ev.sequence >= old.sequence {
                    masters.insert(ev.uid.clone(), ev);
                }
            }
            None => {
                masters.insert(ev.uid.clone(), ev);
            }
        }
    }

    for (uid, master) in &masters {
        let mut ovr: HashMap<String, &RawEvent> = HashMap::new();
        for o in overrides.get(uid).into_iter().flatten() {
            if let Some(r) = &o.recurrence_id {
                ovr.insert(master.key_of(r), o);
            }
        }
        if master.rrule.is_none() && master.rdates.is_empty() {
            let (s, e) = master.place(master.start.local);
            if window.overlaps(s, e) {
                out.instances.push(master.instance(String::new(), s, e));
            }
            continue;
        }
        let mut starts: BTreeMap<String, NaiveDateTime> = BTreeMap::new();
        starts.insert(master.key_of(&master.start), master.start.local);
        if let Some(rule) = &master.rrule {
            match expand_rule(rule, &master.start, window) {
                Ok(list) => {
                    for local in list {
                        let utc = localize(master.start.tz, local);
                        starts.insert(instance_key(utc, master.start.date_only, local.date()), local);
                    }
                }
                Err(m) => out
                    .problems
                    .push(format!("event {uid}: {m}; only its first occurrence is used")),
            }
        }
        for r in &master.rdates {
            let local = r.utc.with_timezone(&master.start.tz).naive_local();
            let local = if master.start.date_only { r.local } else { local };
            starts.insert(master.key_of(r), local);
        }
        for x in &master.exdates {
            starts.remove(&master.key_of(x));
        }
        for (key, local) in starts {
            let (s, e) = master.place(local);
            match ovr.remove(&key) {
                Some(o) => {
                    let (os, oe) = (o.start.utc, o.start.utc + o.length());
                    if window.overlaps(os, oe) {
                        let mut inst = o.instance(key, os, oe);
                        if inst.attendees.is_empty() {
                            inst.attendees = master.attendees.clone();
                        }
                        inst.organizer = inst.organizer.or_else(|| master.organizer.clone());
                        inst.created = inst.created.or(master.created);
                        inst.summary = inst.summary.or_else(|| master.summary.clone());
                        out.instances.push(inst);
                    }
                }
                None if window.overlaps(s, e) => out.instances.push(master.instance(key, s, e)),
                None => {}
            }
        }
        // Overrides of occurrences the rule does not produce (moved in from outside the
        // expansion, or a rule we could not read): taken as they are.
        for (key, o) in ovr {
            let (os, oe) = (o.start.utc, o.start.utc + o.length());
            if window.overlaps(os, oe) {
                out.instances.push(o.instance(key, os, oe));
            }
        }
    }
    // Overrides without their series (an invitation to one occurrence).
    for (uid, list) in &overrides {
        if masters.contains_key(uid) {
            continue;
        }
        for o in list {
            let key = o.recurrence_id.as_ref().map(|r| o.key_of(r)).unwrap_or_default();
            let (os, oe) = (o.start.utc, o.start.utc + o.length());
            if window.overlaps(os, oe) {
                out.instances.push(o.instance(key, os, oe));
            }
        }
    }
}

/// Wall-clock starts of a series up to the window's end, with calcard's iterator run on
/// floating times only (see the module doc).
fn expand_rule(rule: &ICalendarRecurrenceRule, start: &When, window: &Window) -> Result<Vec<NaiveDateTime>, String> {
    let mut rule = rule.clone();
    let tz = start.tz;
    let window_end_local = window.end.with_timezone(&tz).naive_local();
    // UNTIL as wall-clock time in the event's zone.
    let until_local = match rule.until.take() {
        Some(u) => {
            let dt = u.to_date_time().ok_or("invalid UNTIL")?;
            Some(if let Some(off) = dt.offset {
                let utc = Utc.from_utc_datetime(&(dt.date_time - Duration::seconds(i64::from(off.local_minus_utc()))));
                utc.with_timezone(&tz).naive_local()
            } else if u.hour.is_none() {
                // A date UNTIL includes that whole day.
                dt.date_time
                    .date()
                    .and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default())
            } else {
                dt.date_time
            })
        }
        None => None,
    };
    // Without COUNT, nothing past the window matters: stop there.
    let until_local = match (until_local, rule.count) {
        (Some(u), Some(_)) => Some(u),
        (Some(u), None) => Some(u.min(window_end_local)),
        (None, None) => Some(window_end_local),
        (None, Some(_)) => None,
    };
    rule.until = until_local.map(floating);
    let cal = ICalendar {
        components: vec![
            ICalendarComponent {
                component_type: ICalendarComponentType::VCalendar,
                entries: Vec::new(),
                component_ids: vec![1],
            },
            ICalendarComponent {
                component_type: ICalendarComponentType::VEvent,
                entries: vec![
                    ICalendarEntry {
                        name: ICalendarProperty::Uid,
                        params: Vec::new(),
                        values: vec![ICalendarValue::Text("expand".into())],
                    },
                    ICalendarEntry {
                        name: ICalendarProperty::Dtstart,
                        params: Vec::new(),
                        values: vec![ICalendarValue::PartialDateTime(Box::new(floating(start.local)))],
                    },
                    ICalendarEntry {
                        name: ICalendarProperty::Rrule,
                        params: Vec::new(),
                        values: vec![ICalendarValue::RecurrenceRule(Box::new(rule))],
                    },
                ],
                component_ids: Vec::new(),
            },
        ],
    };
    let expanded = cal.expand_dates(CalTz::Floating, MAX_OCCURRENCES);
    if let Some(e) = expanded.errors.first() {
        return Err(format!("RRULE not usable ({:?})", e.error));
    }
    Ok(expanded
        .events
        .into_iter()
        .map(|e| e.start.naive_local())
        .filter(|l| *l <= window_end_local)
        .collect())
}

fn floating(t: NaiveDateTime) -> PartialDateTime {
    use chrono::{Datelike, Timelike};
    PartialDateTime {
        year: Some(t.year() as u16),
        month: Some(t.month() as u8),
        day: Some(t.day() as u8),
        hour: Some(t.hour() as u8),
        minute: Some(t.minute() as u8),
        second: Some(t.second() as u8),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
