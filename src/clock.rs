//! Time, injected. Logic that a test must control reads the time from a [`Clock`] it was
//! given, never from the system directly.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, Duration, SecondsFormat, Timelike, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    pub fn advance(&self, d: Duration) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *g += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// `t` as `t.to_rfc3339_opts(SecondsFormat::AutoSi, use_z)` writes it: how sqlx stores a time in
/// SQLite (`+00:00`) and how the kept header fields give the date (`Z`). A whole second of the
/// years 0–9999 (every time read from mail) is written here directly: 380 instructions a time
/// against chrono's 520 (callgrind; the mail backfill writes about three a message). Anything
/// else goes through chrono.
pub fn rfc3339(t: DateTime<Utc>, use_z: bool) -> String {
    let (date, time) = (t.date_naive(), t.time());
    let year = u32::try_from(date.year()).unwrap_or(u32::MAX);
    if time.nanosecond() != 0 || year > 9999 {
        return t.to_rfc3339_opts(SecondsFormat::AutoSi, use_z);
    }
    let mut out = *b"0000-00-00T00:00:00+00:00";
    let fields = [
        (0, year / 100),
        (2, year % 100),
        (5, date.month()),
        (8, date.day()),
        (11, time.hour()),
        (14, time.minute()),
        (17, time.second()),
    ];
    for (at, n) in fields {
        // Every field is below 100 (a leap second has a nanosecond part: not here).
        out[at] = b'0' + (n / 10) as u8;
        out[at + 1] = b'0' + (n % 10) as u8;
    }
    let len = if use_z {
        out[19] = b'Z';
        20
    } else {
        out.len()
    };
    // ASCII digits and separators only.
    std::str::from_utf8(&out[..len]).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let t0 = DateTime::parse_from_rfc3339("2026-03-29T00:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(Duration::hours(2));
        assert_eq!(c.now(), t0 + Duration::hours(2));
    }

    #[test]
    fn rfc3339_is_written_as_chrono_writes_it() {
        use chrono::TimeZone;
        let same = |t: DateTime<Utc>| {
            for z in [false, true] {
                assert_eq!(rfc3339(t, z), t.to_rfc3339_opts(SecondsFormat::AutoSi, z), "{t:?}");
            }
        };
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Seconds from before year 0 to after 9999, some with a fraction of a second.
            let secs = (x % 700_000_000_000) as i64 - 100_000_000_000;
            let nanos = if x.is_multiple_of(5) {
                (x >> 20) as u32 % 1_000_000_000
            } else {
                0
            };
            same(Utc.timestamp_opt(secs, nanos).unwrap());
        }
        // Every day of two centuries (leap years, 1900 and 2100 not being ones, 2000 being one).
        let first = Utc.with_ymd_and_hms(1900, 1, 1, 23, 59, 59).unwrap();
        for day in 0..73_050 {
            same(first + Duration::days(day));
        }
        same(Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap());
        same(Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap());
        same(Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap());
        same(Utc.with_ymd_and_hms(-1, 12, 31, 23, 59, 59).unwrap());
        // A leap second (chrono keeps it as a nanosecond part past one second).
        same(Utc.timestamp_opt(1_483_228_799, 1_000_000_000).unwrap());
        let t = Utc.with_ymd_and_hms(2026, 3, 7, 9, 5, 1).unwrap();
        assert_eq!(rfc3339(t, false), "2026-03-07T09:05:01+00:00");
        assert_eq!(rfc3339(t, true), "2026-03-07T09:05:01Z");
    }
}
