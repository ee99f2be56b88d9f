//! Reporting periods in a rep's own time zone, and pace: how far into a period a rep is,
//! counted in business days.
//!
//! A period runs from local midnight of its first day to local midnight after its last day,
//! so a week across a DST change is 167 or 169 hours long, and a day that starts inside a DST
//! gap starts at the first instant that exists.

use chrono::{DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::targets::PeriodKind;

/// One period for one time zone: its local dates and the UTC instants they map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodBounds {
    pub kind: PeriodKind,
    /// First local day of the period.
    pub first_day: NaiveDate,
    /// The local day after the last one.
    pub end_day: NaiveDate,
    /// `[start, end)` in UTC.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The first instant of a local day: midnight, or the end of a DST gap that swallows it.
pub fn local_day_start(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut t = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    // A gap is at most a few hours; step forward a quarter hour at a time until time exists.
    for _ in 0..(4 * 24) {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(x) => return x.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => t += Duration::minutes(15),
        }
    }
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

fn quarter_start(d: NaiveDate) -> NaiveDate {
    let month0 = (d.month0() / 3) * 3;
    NaiveDate::from_ymd_opt(d.year(), month0 + 1, 1).expect("first of a month exists")
}

/// The period of `kind` that holds the instant `at`, in `tz`.
pub fn period_containing(kind: PeriodKind, at: DateTime<Utc>, tz: Tz, week_start: Weekday) -> PeriodBounds {
    let today = at.with_timezone(&tz).date_naive();
    let (first_day, end_day) = match kind {
        PeriodKind::Day => (today, today + Duration::days(1)),
        PeriodKind::Week => {
            let back = (7 + today.weekday().num_days_from_monday() - week_start.num_days_from_monday()) % 7;
            let first = today - Duration::days(i64::from(back));
            (first, first + Duration::days(7))
        }
        PeriodKind::Month => {
            let first = today.with_day(1).expect("day 1 exists");
            (first, first + Months::new(1))
        }
        PeriodKind::Quarter => {
            let first = quarter_start(today);
            (first, first + Months::new(3))
        }
    };
    PeriodBounds {
        kind,
        first_day,
        end_day,
        start: local_day_start(first_day, tz),
        end: local_day_start(end_day, tz),
    }
}

/// Business days in `[from, to)`.
pub fn business_days(from: NaiveDate, to: NaiveDate, days: &[Weekday]) -> u32 {
    from.iter_days()
        .take_while(|d| *d < to)
        .filter(|d| days.contains(&d.weekday()))
        .count() as u32
}

/// How much of the period's work time has passed at `now`, from 0 to 1: whole business days
/// before today, plus the elapsed share of today when today is a business day. A period
/// without business days falls back to elapsed wall time.
pub fn elapsed_share(bounds: &PeriodBounds, now: DateTime<Utc>, tz: Tz, days: &[Weekday]) -> f64 {
    if now <= bounds.start {
        return 0.0;
    }
    if now >= bounds.end {
        return 1.0;
    }
    let total = business_days(bounds.first_day, bounds.end_day, days);
    if total == 0 {
        let all = (bounds.end - bounds.start).num_seconds().max(1) as f64;
        return (now - bounds.start).num_seconds() as f64 / all;
    }
    let today = now.with_timezone(&tz).date_naive();
    let mut done = f64::from(business_days(bounds.first_day, today, days));
    if days.contains(&today.weekday()) {
        let start = local_day_start(today, tz);
        let end = local_day_start(today + Duration::days(1), tz);
        let len = (end - start).num_seconds().max(1) as f64;
        done += ((now - start).num_seconds() as f64 / len).clamp(0.0, 1.0);
    }
    (done / f64::from(total)).clamp(0.0, 1.0)
}

/// Business days left in the period after today (today not included).
pub fn business_days_left(bounds: &PeriodBounds, now: DateTime<Utc>, tz: Tz, days: &[Weekday]) -> u32 {
    let today = now.with_timezone(&tz).date_naive();
    if today >= bounds.end_day {
        return 0;
    }
    let from = (today + Duration::days(1)).max(bounds.first_day);
    business_days(from, bounds.end_day, days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const WORK: [Weekday; 5] = [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri];

    #[test]
    fn week_across_the_autumn_dst_change_is_169_hours() {
        // Europe/Stockholm leaves summer time on Sunday 2026-10-25.
        let b = period_containing(
            PeriodKind::Week,
            utc("2026-10-21T12:00:00Z"),
            chrono_tz::Europe::Stockholm,
            Weekday::Mon,
        );
        assert_eq!(b.first_day, NaiveDate::from_ymd_opt(2026, 10, 19).unwrap());
        assert_eq!(b.start, utc("2026-10-18T22:00:00Z"));
        assert_eq!(b.end, utc("2026-10-25T23:00:00Z"));
        assert_eq!((b.end - b.start).num_hours(), 169);
    }

    #[test]
    fn week_start_and_local_date_decide_the_period() {
        // Sunday 23:30 in New York is already Monday in UTC: still the New York week.
        let at = utc("2026-11-30T04:30:00Z");
        let b = period_containing(PeriodKind::Week, at, chrono_tz::America::New_York, Weekday::Mon);
        assert_eq!(b.first_day, NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        let s = period_containing(PeriodKind::Week, at, chrono_tz::America::New_York, Weekday::Sun);
        assert_eq!(s.first_day, NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
    }

    #[test]
    fn months_and_quarters() {
        let at = utc("2026-11-15T10:00:00Z");
        let m = period_containing(PeriodKind::Month, at, chrono_tz::Europe::Rome, Weekday::Mon);
        assert_eq!(m.start, utc("2026-10-31T23:00:00Z"));
        assert_eq!(m.end, utc("2026-11-30T23:00:00Z"));
        let q = period_containing(PeriodKind::Quarter, at, chrono_tz::Europe::Rome, Weekday::Mon);
        assert_eq!(q.first_day, NaiveDate::from_ymd_opt(2026, 10, 1).unwrap());
        assert_eq!(q.end_day, NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        // Summer time on 1 October: the quarter starts at 22:00 UTC the day before.
        assert_eq!(q.start, utc("2026-09-30T22:00:00Z"));
    }

    #[test]
    fn a_day_that_starts_in_a_dst_gap_starts_when_time_exists() {
        // America/Santiago skips 00:00-01:00 on 2026-09-06.
        let d = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let s = local_day_start(d, chrono_tz::America::Santiago);
        assert_eq!(s.with_timezone(&chrono_tz::America::Santiago).date_naive(), d);
        assert_eq!(s, utc("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn pace_counts_business_days_only() {
        let tz = chrono_tz::UTC;
        // Week of Mon 2026-11-23; Wednesday noon: 2.5 of 5 business days.
        let b = period_containing(PeriodKind::Week, utc("2026-11-25T12:00:00Z"), tz, Weekday::Mon);
        assert_eq!(elapsed_share(&b, utc("2026-11-25T12:00:00Z"), tz, &WORK), 0.5);
        assert_eq!(business_days_left(&b, utc("2026-11-25T12:00:00Z"), tz, &WORK), 2);
        // Saturday: the whole week's work time has passed.
        assert_eq!(elapsed_share(&b, utc("2026-11-28T12:00:00Z"), tz, &WORK), 1.0);
        assert_eq!(elapsed_share(&b, utc("2026-11-20T12:00:00Z"), tz, &WORK), 0.0);
        assert_eq!(business_days(b.first_day, b.end_day, &WORK), 5);
    }
}
