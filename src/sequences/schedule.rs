//! When steps go out: waits (calendar days, business days, hours), the sending window in the
//! lead's time zone (falling back to the rep's, then the sequence's), weekends, holidays, DST,
//! and a deterministic jitter after the window opens. Pure functions, no I/O, no clock.

use chrono::{DateTime, Datelike, Days, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::definition::{WaitSpec, Window};

/// The calendar a sequence sends by: window, holidays and the time zone of one lead.
#[derive(Debug, Clone)]
pub struct SendCalendar<'a> {
    pub tz: Tz,
    pub window: &'a Window,
    pub holidays: &'a [NaiveDate],
}

/// The lead's zone when it has a valid one, else the rep's, else the sequence default.
pub fn resolve_tz(lead: Option<&str>, rep: Option<Tz>, sequence_default: Tz) -> Tz {
    lead.and_then(|s| s.trim().parse::<Tz>().ok())
        .or(rep)
        .unwrap_or(sequence_default)
}

/// A local wall-clock time as an instant. In a DST gap (02:30 on a spring-forward night) the
/// time moves forward by the gap; an ambiguous time (autumn) takes the first occurrence.
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        LocalResult::None => {
            let mut probe = local;
            for _ in 0..180 {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

impl SendCalendar<'_> {
    /// Whether mail may go out on this local date (an open weekday, not a holiday).
    pub fn is_open_day(&self, d: NaiveDate) -> bool {
        self.window.days.contains(&d.weekday()) && !self.holidays.contains(&d)
    }

    /// `from` plus a wait, before the window is applied.
    pub fn after_wait(&self, from: DateTime<Utc>, wait: WaitSpec) -> DateTime<Utc> {
        let local = from.with_timezone(&self.tz).naive_local();
        match wait {
            WaitSpec::Hours(h) => from + Duration::hours(i64::from(h)),
            WaitSpec::Days(n) => {
                let date = local
                    .date()
                    .checked_add_days(Days::new(u64::from(n)))
                    .unwrap_or(local.date());
                local_to_utc(self.tz, date.and_time(local.time()))
            }
            WaitSpec::BusinessDays(n) => {
                let mut date = local.date();
                let mut left = n;
                // A year of closed days in a row means a broken calendar: stop looking.
                let mut guard = 0;
                while left > 0 && guard < 366 + n {
                    date = date.succ_opt().unwrap_or(date);
                    guard += 1;
                    if self.is_open_day(date) {
                        left -= 1;
                    }
                }
                local_to_utc(self.tz, date.and_time(local.time()))
            }
        }
    }

    /// The first moment at or after `t` when the window is open. When `t` is outside the
    /// window, the result is the next opening plus a jitter in `[0, window.jitter)` derived
    /// from `jitter_key` (the same key always gets the same offset), kept inside the window.
    pub fn next_send_time(&self, t: DateTime<Utc>, jitter_key: u64) -> DateTime<Utc> {
        let local = t.with_timezone(&self.tz).naive_local();
        if self.is_open_day(local.date()) && local.time() >= self.window.start && local.time() < self.window.end {
            return t;
        }
        let mut date = local.date();
        if !(self.is_open_day(date) && local.time() < self.window.start) {
            date = date.succ_opt().unwrap_or(date);
        }
        let mut guard = 0;
        while !self.is_open_day(date) && guard < 400 {
            date = date.succ_opt().unwrap_or(date);
            guard += 1;
        }
        let open = local_to_utc(self.tz, date.and_time(self.window.start));
        let close = local_to_utc(self.tz, date.and_time(self.window.end));
        let span = (close - open).num_seconds().max(1) as u64;
        let jitter = (self.window.jitter.as_secs()).min(span.saturating_sub(1));
        open + Duration::seconds(jitter_offset(jitter_key, jitter) as i64)
    }

    /// The start of the local day containing `t` (for daily caps in the mailbox's zone).
    pub fn day_start(tz: Tz, t: DateTime<Utc>) -> DateTime<Utc> {
        let d = t.with_timezone(&tz).date_naive();
        local_to_utc(tz, d.and_time(chrono::NaiveTime::MIN))
    }
}

/// A stable offset in `[0, max)` for `key` (splitmix64).
pub fn jitter_offset(key: u64, max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % max
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, Timelike, Weekday};

    fn window() -> Window {
        Window {
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
            days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            jitter: std::time::Duration::from_secs(1800),
        }
    }

    fn berlin(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        local_to_utc(
            chrono_tz::Europe::Berlin,
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, min, 0)
                .unwrap(),
        )
    }

    #[test]
    fn inside_the_window_sends_now() {
        let w = window();
        let cal = SendCalendar {
            tz: chrono_tz::Europe::Berlin,
            window: &w,
            holidays: &[],
        };
        let t = berlin(2026, 10, 23, 10, 15);
        assert_eq!(cal.next_send_time(t, 7), t);
    }

    #[test]
    fn friday_evening_moves_to_monday_morning_with_jitter() {
        let w = window();
        let cal = SendCalendar {
            tz: chrono_tz::Europe::Berlin,
            window: &w,
            holidays: &[],
        };
        // Friday 23 Oct 2026, 18:00 CEST; the clocks go back on Sunday 25 Oct.
        let t = berlin(2026, 10, 23, 18, 0);
        let next = cal.next_send_time(t, 42);
        let local = next.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(local.weekday(), Weekday::Mon);
        assert_eq!(local.date_naive(), NaiveDate::from_ymd_opt(2026, 10, 26).unwrap());
        assert_eq!(local.hour(), 9);
        assert!(next >= berlin(2026, 10, 26, 9, 0) && next < berlin(2026, 10, 26, 9, 30));
        // After the DST change, 09:00 CET is 08:00 UTC.
        assert_eq!(berlin(2026, 10, 26, 9, 0).hour(), 8);
        // Deterministic, and different keys spread.
        assert_eq!(next, cal.next_send_time(t, 42));
        let spread: std::collections::HashSet<_> = (0..50).map(|k| cal.next_send_time(t, k)).collect();
        assert!(spread.len() > 40, "{}", spread.len());
    }

    #[test]
    fn holidays_and_business_days() {
        let w = window();
        let hol = [
            NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 25).unwrap(),
        ];
        let cal = SendCalendar {
            tz: chrono_tz::Europe::Berlin,
            window: &w,
            holidays: &hol,
        };
        // Wednesday 23 Dec + 1 business day skips Thu 24, Fri 25 and the weekend.
        let t = berlin(2026, 12, 23, 11, 0);
        let due = cal.after_wait(t, WaitSpec::BusinessDays(1));
        assert_eq!(due, berlin(2026, 12, 28, 11, 0));
        // A holiday morning moves to the next open day.
        let next = cal.next_send_time(berlin(2026, 12, 24, 10, 0), 1);
        assert_eq!(
            next.with_timezone(&chrono_tz::Europe::Berlin).date_naive(),
            NaiveDate::from_ymd_opt(2026, 12, 28).unwrap()
        );
    }

    #[test]
    fn days_keep_wall_clock_time_across_dst() {
        let w = window();
        let cal = SendCalendar {
            tz: chrono_tz::Europe::Berlin,
            window: &w,
            holidays: &[],
        };
        let t = berlin(2026, 10, 24, 10, 0);
        let due = cal.after_wait(t, WaitSpec::Days(2));
        assert_eq!(due, berlin(2026, 10, 26, 10, 0));
        assert_eq!((due - t).num_hours(), 49);
        assert_eq!(cal.after_wait(t, WaitSpec::Hours(4)), t + Duration::hours(4));
    }

    #[test]
    fn dst_gap_moves_forward() {
        // 29 March 2026, 02:30 does not exist in Berlin.
        let t = local_to_utc(
            chrono_tz::Europe::Berlin,
            NaiveDate::from_ymd_opt(2026, 3, 29)
                .unwrap()
                .and_hms_opt(2, 30, 0)
                .unwrap(),
        );
        assert_eq!(t.with_timezone(&chrono_tz::Europe::Berlin).hour(), 3);
    }

    #[test]
    fn time_zone_fallbacks() {
        let rep = Some(chrono_tz::America::New_York);
        assert_eq!(resolve_tz(Some("Asia/Tehran"), rep, Tz::UTC), chrono_tz::Asia::Tehran);
        assert_eq!(
            resolve_tz(Some("Mars/Base"), rep, Tz::UTC),
            chrono_tz::America::New_York
        );
        assert_eq!(
            resolve_tz(None, None, chrono_tz::Europe::Berlin),
            chrono_tz::Europe::Berlin
        );
    }

    #[test]
    fn jitter_stays_in_range() {
        for k in 0..1000 {
            assert!(jitter_offset(k, 600) < 600);
        }
        assert_eq!(jitter_offset(5, 0), 0);
    }
}
