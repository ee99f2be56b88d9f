//! The return date an auto-reply states ("Out of office until 14 December", "Abwesend bis
//! 14.12.2026"), in English and German, so a paused enrollment resumes after it.

use chrono::{Datelike, NaiveDate};

const MONTHS: &[(&str, u32)] = &[
    ("january", 1),
    ("januar", 1),
    ("jänner", 1),
    ("jan", 1),
    ("february", 2),
    ("februar", 2),
    ("feb", 2),
    ("march", 3),
    ("märz", 3),
    ("maerz", 3),
    ("mar", 3),
    ("mär", 3),
    ("april", 4),
    ("apr", 4),
    ("may", 5),
    ("mai", 5),
    ("june", 6),
    ("juni", 6),
    ("jun", 6),
    ("july", 7),
    ("juli", 7),
    ("jul", 7),
    ("august", 8),
    ("aug", 8),
    ("september", 9),
    ("sept", 9),
    ("sep", 9),
    ("october", 10),
    ("oktober", 10),
    ("oct", 10),
    ("okt", 10),
    ("november", 11),
    ("nov", 11),
    ("december", 12),
    ("dezember", 12),
    ("dec", 12),
    ("dez", 12),
];

fn month(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.').to_lowercase();
    MONTHS.iter().find(|(n, _)| *n == w).map(|(_, m)| *m)
}

fn number(word: &str) -> Option<u32> {
    let w = word.trim_end_matches(['.', ',']);
    let w = w
        .trim_end_matches("st")
        .trim_end_matches("nd")
        .trim_end_matches("rd")
        .trim_end_matches("th");
    if w.is_empty() || w.len() > 4 || !w.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    w.parse().ok()
}

/// A date without a year is the next such date on or after `reference`.
fn with_year(day: u32, month: u32, year: Option<i32>, reference: NaiveDate) -> Option<NaiveDate> {
    match year {
        Some(y) => NaiveDate::from_ymd_opt(if y < 100 { 2000 + y } else { y }, month, day),
        None => {
            let this = NaiveDate::from_ymd_opt(reference.year(), month, day)?;
            if this >= reference {
                Some(this)
            } else {
                NaiveDate::from_ymd_opt(reference.year() + 1, month, day)
            }
        }
    }
}

/// Every date written in `text` (numeric `2026-12-14`, `14.12.2026`, `14.12.`, `14/12/2026`,
/// or with a month name in English or German, in either order).
pub fn dates_in(text: &str, reference: NaiveDate) -> Vec<NaiveDate> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, raw) in words.iter().enumerate() {
        let w = raw.trim_end_matches([',', '!', '?']);
        // ISO
        if let Ok(d) = NaiveDate::parse_from_str(w.trim_end_matches('.'), "%Y-%m-%d") {
            out.push(d);
            continue;
        }
        // 14.12.2026 / 14.12.26 / 14.12. / 14/12/2026
        let parts: Vec<&str> = w.split(['.', '/']).collect();
        if parts.len() >= 2 && parts.len() <= 3 && parts[0].chars().all(|c| c.is_ascii_digit()) && !parts[0].is_empty()
        {
            let day = parts[0].parse::<u32>().ok();
            let mon = parts[1].parse::<u32>().ok();
            let year = parts
                .get(2)
                .filter(|y| !y.is_empty())
                .and_then(|y| y.parse::<i32>().ok());
            let complete = parts.len() == 3 && (parts[2].is_empty() || year.is_some());
            if complete
                && let (Some(d), Some(m)) = (day, mon)
                && let Some(date) = with_year(d, m, year, reference)
            {
                out.push(date);
                continue;
            }
        }
        let next = words.get(i + 1).map(|s| s.trim_end_matches([',', '!', '?']));
        let after = words.get(i + 2).map(|s| s.trim_end_matches([',', '!', '?', '.']));
        let year_of = |s: Option<&str>| s.and_then(|y| if y.len() == 4 { y.parse::<i32>().ok() } else { None });
        // 14 December 2026 / 14. Dezember
        if let (Some(d), Some(m)) = (number(w), next.and_then(month))
            && let Some(date) = with_year(d, m, year_of(after), reference)
        {
            out.push(date);
            continue;
        }
        // December 14, 2026
        if let (Some(m), Some(d)) = (month(w), next.and_then(number))
            && d <= 31
            && let Some(date) = with_year(d, m, year_of(after), reference)
        {
            out.push(date);
        }
    }
    out
}

/// The day to resume after an auto-reply that says when its sender is back: the day after the
/// latest date it names that lies after `reference` (within a year), if any.
pub fn resume_date(text: &str, reference: NaiveDate) -> Option<NaiveDate> {
    dates_in(text, reference)
        .into_iter()
        .filter(|d| *d > reference && (*d - reference).num_days() <= 366)
        .max()
        .and_then(|d| d.succ_opt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn english() {
        let r = d(2026, 11, 20);
        assert_eq!(resume_date("Out of office until 14 December", r), Some(d(2026, 12, 15)));
        assert_eq!(
            resume_date("Automatic reply: back on December 3rd, 2026", r),
            Some(d(2026, 12, 4))
        );
        assert_eq!(resume_date("I am away until 2026-12-01.", r), Some(d(2026, 12, 2)));
        assert_eq!(resume_date("Away from 21 Nov to 5 Jan", r), Some(d(2027, 1, 6)));
    }

    #[test]
    fn german() {
        let r = d(2026, 11, 20);
        assert_eq!(
            resume_date("Abwesenheitsnotiz: bis 14.12.2026 nicht im Büro", r),
            Some(d(2026, 12, 15))
        );
        assert_eq!(
            resume_date("Ich bin ab dem 7. Dezember wieder erreichbar", r),
            Some(d(2026, 12, 8))
        );
        assert_eq!(resume_date("Abwesend bis 30.11.", r), Some(d(2026, 12, 1)));
    }

    #[test]
    fn no_date() {
        assert_eq!(resume_date("Out of office", d(2026, 11, 20)), None);
        assert_eq!(resume_date("Version 1.2 released", d(2026, 11, 20)), None);
        // A date in the past is not a return date.
        assert_eq!(resume_date("since 2026-01-05", d(2026, 11, 20)), None);
    }
}
