//! A reader for the usual shape of a fetched header block, for the IMAP backfill's hot path.
//!
//! mail-parser reads any message, however broken, and decodes everything it knows: on the
//! header blocks IMAP returns it was more than half of the cost of parsing them (an eighth of
//! all the instructions of a backfill; BENCHMARKS.md has the measurements). Most header blocks are
//! plain: ASCII, CRLF line ends, one of each field, addresses as `a@b` or `Name <a@b>`, ids as
//! `<id>`, a date in RFC 5322's own format, no encoded words. This reads exactly that shape
//! and gives up (`None`) on the first thing outside it (a comment, a group, an encoded word,
//! an 8-bit byte, a field given twice, a multipart report, a body), and the caller then parses
//! the block with mail-parser: it never guesses. The differential tests below hold its answer
//! to mail-parser's wherever it gives one.

use std::sync::LazyLock;

use chrono::{TimeZone, Utc};

use super::super::fetch::MONTHS;
use super::{MailHeaders, OtherFields};

/// The header fields of `raw`, when `raw` is a header block of the plain shape (above).
pub(super) fn parse(raw: &[u8]) -> Option<MailHeaders> {
    // A header block ends with its first empty line. Anything after it (a whole message, from
    // Maildir or a bounce's body) goes to mail-parser before any byte of the body is looked at.
    if EMPTY_LINE.find(raw)? + 4 != raw.len() {
        return None;
    }
    // The fields, each with its line end.
    let block = &raw[..raw.len() - 2];
    if !plain_bytes(block) {
        return None;
    }
    let mut f = Fields::default();
    let mut rest = block;
    while !rest.is_empty() {
        let end = field_end(rest);
        // The value keeps its line end, as mail-parser's raw value does.
        let (field, tail) = rest.split_at(end + 2);
        rest = tail;
        let colon = field.iter().position(|&b| b == b':')?;
        let name = &field[..colon];
        if name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        if let Some(slot) = f.slot(name) {
            if slot.is_some() {
                return None;
            }
            *slot = Some(&field[colon + 1..]);
        }
    }
    let content_type = match f.content_type {
        Some(v) => Some(content_type(v)?),
        None => None,
    };
    // Reports go to mail-parser (they are few, and their recipients are read from the body).
    if content_type.is_some_and(|(t, s)| t.eq_ignore_ascii_case("multipart") && s.eq_ignore_ascii_case("report")) {
        return None;
    }
    let other = OtherFields {
        auto_submitted: text(f.auto_submitted)?,
        precedence: text(f.precedence)?,
        x_autoreply: text(f.x_autoreply)?,
        x_autorespond: text(f.x_autorespond)?,
        x_auto_response_suppress: text(f.x_auto_response_suppress)?,
        x_failed_recipients: text(f.x_failed_recipients)?,
    };
    let message_id = match f.message_id {
        Some(v) => {
            let mut ids = ids(v)?;
            if ids.len() != 1 {
                return None;
            }
            ids.pop()
        }
        None => None,
    };
    let date = match f.date {
        Some(v) => Utc.timestamp_opt(date(v)?, 0).single().filter(|d| d.timestamp() > 0),
        None => None,
    };
    let mut h = MailHeaders {
        message_id,
        from: optional(f.from, addresses)?,
        to: optional(f.to, addresses)?,
        cc: optional(f.cc, addresses)?,
        bcc: optional(f.bcc, addresses)?,
        date,
        subject: f.subject.and_then(subject),
        in_reply_to: optional(f.in_reply_to, ids)?,
        references: optional(f.references, ids)?,
        has_list_id: optional(f.list_id, list)?,
        has_list_unsubscribe: optional(f.list_unsubscribe, list)?,
        ..MailHeaders::default()
    };
    other.apply(&mut h);
    Some(h)
}

/// The end of a header block. Built once: building a searcher cost more than the search.
static EMPTY_LINE: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// A raw value as text (`Some(None)` for a field that is not there).
fn text(v: Option<&[u8]>) -> Option<Option<&str>> {
    match v {
        None => Some(None),
        Some(v) => std::str::from_utf8(v).ok().map(Some),
    }
}

/// `read(value)` for a field that is there; the default for one that is not.
fn optional<T: Default>(value: Option<&[u8]>, read: impl Fn(&[u8]) -> Option<T>) -> Option<T> {
    match value {
        Some(v) => read(v),
        None => Some(T::default()),
    }
}

/// ASCII text and tabs, with CR and LF only as CRLF pairs, and no encoded word (`=?`).
fn plain_bytes(block: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = block.get(i) {
        if CLASS[b as usize] & PLAIN == 0 {
            match (b, block.get(i + 1)) {
                (b'\r', Some(b'\n')) => i += 1,
                (b'=', next) if next != Some(&b'?') => {}
                _ => return false,
            }
        }
        i += 1;
    }
    true
}

/// Byte classes, one bit each (a table: this runs on every byte of every header block).
const PLAIN: u8 = 1;
const ATEXT: u8 = 2;
const TOKEN: u8 = 4;

static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        // Text and tabs; `=` is looked at (`=?` starts an encoded word).
        if (c == b'\t' || (c >= b' ' && c <= b'~')) && c != b'=' {
            class |= PLAIN;
        }
        if c.is_ascii_alphanumeric() || contains(b"!#$%&'*+-/=?^_`{|}~", c) {
            class |= ATEXT;
        }
        // RFC 2045 token characters (and not `*`, which starts an RFC 2231 parameter).
        if c.is_ascii_graphic() && !contains(b"()<>@,;:\\\"/[]?=*", c) {
            class |= TOKEN;
        }
        table[b] = class;
        b += 1;
    }
    table
}

const fn contains(set: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        if set[i] == c {
            return true;
        }
        i += 1;
    }
    false
}

/// Where the field at the start of `rest` ends: the index of the CR of the first line end not
/// followed by a space or a tab (`rest` ends with a line end, so there is one).
fn field_end(rest: &[u8]) -> usize {
    let mut from = 0;
    loop {
        // Every LF follows a CR (checked by `plain_bytes`).
        let lf = from
            + rest[from..]
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(rest.len() - from - 1);
        if !matches!(rest.get(lf + 1), Some(b' ' | b'\t')) {
            return lf - 1;
        }
        from = lf + 1;
    }
}

/// The fields read, each as its raw value (after the colon, with its line end).
#[derive(Default)]
struct Fields<'a> {
    message_id: Option<&'a [u8]>,
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    cc: Option<&'a [u8]>,
    bcc: Option<&'a [u8]>,
    date: Option<&'a [u8]>,
    subject: Option<&'a [u8]>,
    in_reply_to: Option<&'a [u8]>,
    references: Option<&'a [u8]>,
    list_id: Option<&'a [u8]>,
    list_unsubscribe: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
    auto_submitted: Option<&'a [u8]>,
    precedence: Option<&'a [u8]>,
    x_autoreply: Option<&'a [u8]>,
    x_autorespond: Option<&'a [u8]>,
    x_auto_response_suppress: Option<&'a [u8]>,
    x_failed_recipients: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Where the value of the field called `name` goes; `None` for a field not read.
    fn slot(&mut self, name: &[u8]) -> Option<&mut Option<&'a [u8]>> {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        // The length first: most names are ruled out without comparing.
        Some(match name.len() {
            2 if is("to") => &mut self.to,
            2 if is("cc") => &mut self.cc,
            3 if is("bcc") => &mut self.bcc,
            4 if is("from") => &mut self.from,
            4 if is("date") => &mut self.date,
            7 if is("subject") => &mut self.subject,
            7 if is("list-id") => &mut self.list_id,
            10 if is("message-id") => &mut self.message_id,
            10 if is("precedence") => &mut self.precedence,
            10 if is("references") => &mut self.references,
            11 if is("in-reply-to") => &mut self.in_reply_to,
            11 if is("x-autoreply") => &mut self.x_autoreply,
            12 if is("content-type") => &mut self.content_type,
            13 if is("x-autorespond") => &mut self.x_autorespond,
            14 if is("auto-submitted") => &mut self.auto_submitted,
            16 if is("list-unsubscribe") => &mut self.list_unsubscribe,
            19 if is("x-failed-recipients") => &mut self.x_failed_recipients,
            24 if is("x-auto-response-suppress") => &mut self.x_auto_response_suppress,
            _ => return None,
        })
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 5322 `atext`.
fn is_atext(b: u8) -> bool {
    CLASS[b as usize] & ATEXT != 0
}

/// `<id> <id> …`, separated by white space only; at least one.
fn ids(v: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = v.trim_ascii();
    while !rest.is_empty() {
        let inner = rest.strip_prefix(b"<")?;
        let close = inner.iter().position(|&b| b == b'>')?;
        let id = &inner[..close];
        if id.is_empty() || !id.iter().all(|&b| b.is_ascii_graphic() && b != b'<') {
            return None;
        }
        out.push(String::from_utf8(id.to_vec()).ok()?);
        rest = inner[close + 1..].trim_ascii();
    }
    (!out.is_empty()).then_some(out)
}

/// `a@b`, `<a@b>`, `Name <a@b>` or `"Name, maybe" <a@b>`, separated by commas; at least one.
/// Every address normalized; one `address::normalize` refuses is left out, as with
/// mail-parser's answer.
fn addresses(v: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = v;
    loop {
        // One entry: up to a comma outside a quoted name.
        let mut quoted = false;
        let end = rest
            .iter()
            .position(|&b| {
                if b == b'"' {
                    quoted = !quoted;
                }
                b == b',' && !quoted
            })
            .unwrap_or(rest.len());
        let addr = mailbox(rest[..end].trim_ascii())?;
        if let Ok(a) = crate::address::normalize(std::str::from_utf8(addr).ok()?) {
            out.push(a);
        }
        if end == rest.len() {
            return Some(out);
        }
        rest = &rest[end + 1..];
    }
}

/// The address of one entry of an address list.
fn mailbox(entry: &[u8]) -> Option<&[u8]> {
    let Some(open) = entry.iter().position(|&b| b == b'<') else {
        return addr_spec(entry);
    };
    let inner = entry[open + 1..].strip_suffix(b">")?;
    let name = entry[..open].trim_ascii();
    let name_ok = match name.strip_prefix(b"\"").and_then(|n| n.strip_suffix(b"\"")) {
        Some(quoted) => !quoted.iter().any(|&b| b == b'"' || b == b'\\'),
        None => name.iter().all(|&b| is_atext(b) || b == b'.' || is_space(b)),
    };
    if name_ok { addr_spec(inner) } else { None }
}

/// `local@domain` of atext and dots.
fn addr_spec(v: &[u8]) -> Option<&[u8]> {
    let at = v.iter().position(|&b| b == b'@')?;
    let ok = at > 0 && at + 1 < v.len() && v.iter().enumerate().all(|(i, &b)| i == at || is_atext(b) || b == b'.');
    ok.then_some(v)
}

/// An unstructured field as mail-parser reads it: each line trimmed, the non-empty ones
/// joined by a space; then trimmed, as `MailHeaders` keeps subjects.
fn subject(v: &[u8]) -> Option<String> {
    let mut out = String::new();
    for line in v.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(std::str::from_utf8(line).ok()?);
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a `List-Id` or `List-Unsubscribe` field names something: `<…>` items separated by
/// commas, the first one maybe after a plain name. A field of another shape gives `None`.
fn list(v: &[u8]) -> Option<bool> {
    let v = v.trim_ascii();
    let open = v.iter().position(|&b| b == b'<')?;
    let name = &v[..open];
    if !name.iter().all(|&b| is_atext(b) || b == b'.' || is_space(b)) {
        return None;
    }
    let mut rest = &v[open..];
    loop {
        let inner = rest.strip_prefix(b"<")?;
        let close = inner.iter().position(|&b| b == b'>')?;
        let item = &inner[..close];
        if item.is_empty() || !item.iter().all(|&b| b.is_ascii_graphic() && !b"<\"(),;".contains(&b)) {
            return None;
        }
        rest = inner[close + 1..].trim_ascii();
        if rest.is_empty() {
            return Some(true);
        }
        rest = rest.strip_prefix(b",")?.trim_ascii();
    }
}

/// `type/subtype` and `; name=value` parameters (tokens, or quoted without escapes), as the
/// type and the subtype; `None` for anything else.
fn content_type(v: &[u8]) -> Option<(&str, &str)> {
    let token = |v: &[u8]| (!v.is_empty() && v.iter().all(|&b| CLASS[b as usize] & TOKEN != 0)).then_some(());
    let mut parts = v.split(|&b| b == b';');
    let full = parts.next()?.trim_ascii();
    let slash = full.iter().position(|&b| b == b'/')?;
    let (ctype, subtype) = (&full[..slash], &full[slash + 1..]);
    token(ctype)?;
    token(subtype)?;
    for p in parts {
        let p = p.trim_ascii();
        if p.is_empty() {
            continue;
        }
        let eq = p.iter().position(|&b| b == b'=')?;
        token(p[..eq].trim_ascii())?;
        let value = p[eq + 1..].trim_ascii();
        match value.strip_prefix(b"\"").and_then(|q| q.strip_suffix(b"\"")) {
            Some(q) if !q.iter().any(|&b| b == b'"' || b == b'\\' || b == b';') => {}
            Some(_) => return None,
            None => token(value)?,
        }
    }
    Some((std::str::from_utf8(ctype).ok()?, std::str::from_utf8(subtype).ok()?))
}

const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];

/// `[Ddd, ]D Mmm YYYY HH:MM[:SS] ±HHMM`, maybe followed by a comment of letters such as
/// `(UTC)`, as seconds since the epoch. Nothing else: no obsolete zone names, no two-digit
/// years.
fn date(v: &[u8]) -> Option<i64> {
    let v = std::str::from_utf8(v.trim_ascii()).ok()?;
    let mut words = v.split_ascii_whitespace();
    let mut word = words.next()?;
    if let Some(day_name) = word.strip_suffix(',') {
        if !DAYS.contains(&day_name.as_bytes()) {
            return None;
        }
        word = words.next()?;
    }
    let day = number(word, 1, 2)?;
    let month_name = words.next()?.as_bytes();
    let month = MONTHS.iter().position(|m| *m == month_name)? as i64 + 1;
    let year = number(words.next()?, 4, 4)?;
    let mut clock = words.next()?.split(':');
    let hour = number(clock.next()?, 2, 2)?;
    let minute = number(clock.next()?, 2, 2)?;
    let second = clock.next().map_or(Some(0), |s| number(s, 2, 2))?;
    if clock.next().is_some() {
        return None;
    }
    let zone = words.next()?;
    let (sign, zone) = match zone.as_bytes().first()? {
        b'+' => (-1, &zone[1..]),
        b'-' => (1, &zone[1..]),
        _ => return None,
    };
    let zone = number(zone, 4, 4)?;
    let (zone_hour, zone_minute) = (zone / 100, zone % 100);
    let comment = |c: &str| {
        c.len() > 2
            && c.starts_with('(')
            && c.ends_with(')')
            && c[1..c.len() - 1].bytes().all(|b| b.is_ascii_alphabetic())
    };
    if !words.next().is_none_or(comment) {
        return None;
    }
    if words.next().is_some() {
        return None;
    }
    let valid = (1..=31).contains(&day)
        && (1900..=3000).contains(&year)
        && hour <= 23
        && minute <= 59
        && second <= 59
        && zone_hour <= 23
        && zone_minute <= 59;
    if !valid {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(local + sign * (zone_hour * 3600 + zone_minute * 60))
}

/// `s` as a number of `min` to `max` digits.
fn number(s: &str, min: usize, max: usize) -> Option<i64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0, |n, b| n * 10 + i64::from(b - b'0')))
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (a day past the
/// month's end counts into the next month, as in mail-parser).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests;
