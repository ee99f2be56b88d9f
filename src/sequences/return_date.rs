//! The return date an auto-reply states ("Out of office until 14 December", "Abwesend bis
//! 14.12.2026", "de retour le 1er décembre", "hasta el 14 de diciembre"), so a paused
//! enrollment resumes after it. Numeric dates are read in any language; month names in the
//! languages whose auto-replies the matcher recognises (English, German, French, Spanish,
//! Italian, Dutch, Swedish, Portuguese), not Persian, whose auto-replies usually give a date
//! of the Solar Hijri calendar.

use chrono::{Datelike, NaiveDate};

/// Month names and the abbreviations that cannot be mistaken for a common word next to a
/// number ("2 ago", "2 set" and "2 gen" stay numbers).
const MONTHS: &[(&str, u32)] = &[
    // English, German (with Austrian "Jänner")
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
    // French
    ("janvier", 1),
    ("janv", 1),
    ("février", 2),
    ("fevrier", 2),
    ("févr", 2),
    ("mars", 3),
    ("avril", 4),
    ("avr", 4),
    ("juin", 6),
    ("juillet", 7),
    ("juil", 7),
    ("août", 8),
    ("aout", 8),
    ("septembre", 9),
    ("octobre", 10),
    ("novembre", 11),
    ("décembre", 12),
    ("decembre", 12),
    ("déc", 12),
    // Spanish
    ("enero", 1),
    ("febrero", 2),
    ("marzo", 3),
    ("abril", 4),
    ("mayo", 5),
    ("junio", 6),
    ("julio", 7),
    ("agosto", 8),
    ("septiembre", 9),
    ("setiembre", 9),
    ("octubre", 10),
    ("noviembre", 11),
    ("diciembre", 12),
    // Italian
    ("gennaio", 1),
    ("febbraio", 2),
    ("aprile", 4),
    ("maggio", 5),
    ("giugno", 6),
    ("luglio", 7),
    ("settembre", 9),
    ("ottobre", 10),
    ("dicembre", 12),
    // Dutch
    ("januari", 1),
    ("februari", 2),
    ("maart", 3),
    ("mei", 5),
    ("augustus", 8),
    // Swedish
    ("maj", 5),
    ("augusti", 8),
    // Portuguese
    ("janeiro", 1),
    ("fevereiro", 2),
    ("março", 3),
    ("marco", 3),
    ("maio", 5),
    ("junho", 6),
    ("julho", 7),
    ("setembro", 9),
    ("outubro", 10),
    ("novembro", 11),
    ("dezembro", 12),
];

/// Words that join a day, its month and its year in Spanish and Portuguese ("14 de diciembre
/// de 2026"): skipped when reading dates.
const DATE_JOINERS: &[&str] = &["de", "del"];

fn month(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.').to_lowercase();
    MONTHS.iter().find(|(n, _)| *n == w).map(|(_, m)| *m)
}

fn number(word: &str) -> Option<u32> {
    let w = word.trim_end_matches(['.', ',']);
    // Ordinals: 1st 2nd 3rd 4th, French 1er / 2e, Spanish and Portuguese 1º.
    let w = w
        .trim_end_matches("st")
        .trim_end_matches("nd")
        .trim_end_matches("rd")
        .trim_end_matches("th")
        .trim_end_matches("er")
        .trim_end_matches(['e', 'º', '°']);
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
/// or with a month name (see [`MONTHS`]) before or after the day).
pub fn dates_in(text: &str, reference: NaiveDate) -> Vec<NaiveDate> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ';')
        .filter(|w| !w.is_empty() && !DATE_JOINERS.iter().any(|j| w.eq_ignore_ascii_case(j)))
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
    fn french_spanish_italian_dutch_swedish_portuguese() {
        let r = d(2026, 11, 20);
        for (text, back) in [
            ("Je suis absent, de retour le 1er décembre", d(2026, 12, 2)),
            ("Absente jusqu'au 14 décembre 2026 inclus", d(2026, 12, 15)),
            (
                "Estaré fuera de la oficina hasta el 14 de diciembre de 2026",
                d(2026, 12, 15),
            ),
            ("Fuera hasta el 3º de enero", d(2027, 1, 4)),
            ("Sarò assente fino al 3 gennaio", d(2027, 1, 4)),
            ("Ik ben afwezig tot en met 5 januari 2027", d(2027, 1, 6)),
            ("Jag är tillbaka den 8 januari", d(2027, 1, 9)),
            ("Estarei ausente até 14 de dezembro", d(2026, 12, 15)),
            ("Afwezig tot 2e december", d(2026, 12, 3)),
        ] {
            assert_eq!(resume_date(text, r), Some(back), "{text}");
        }
    }

    #[test]
    fn no_date() {
        // Abbreviations that are also words are not months.
        assert_eq!(resume_date("Replied 2 ago", d(2026, 11, 20)), None);
        assert_eq!(
            resume_date("Out of office, 2 set of slides attached", d(2026, 11, 20)),
            None
        );
        assert_eq!(resume_date("Out of office", d(2026, 11, 20)), None);
        assert_eq!(resume_date("Version 1.2 released", d(2026, 11, 20)), None);
        // A date in the past is not a return date.
        assert_eq!(resume_date("since 2026-01-05", d(2026, 11, 20)), None);
    }
}
