//! The answer to a sync's `UID FETCH`, read straight from the connection's responses.
//!
//! async-imap decodes every FETCH response into a tree of attribute values (BODYSTRUCTURE in
//! full, nested lists and all), keeps each in a block of its own and, after each one, moves the
//! rest of its read buffer into a new zeroed block: most of the cost of reading a backfill on
//! Rapport's side. A sync needs four things of each response (the UID, whether the message is a
//! draft, the internal date, the fetched section) and the attachment names, which only the few
//! messages whose structure names a file have. Here each response is walked once by a small
//! reader of the IMAP syntax (RFC 3501 §9: atoms, numbers, quoted strings, literals, lists),
//! the needed values are copied into one buffer for the whole batch (the internal date is read
//! at once), and everything else is skipped over whatever it is, so data a server adds
//! (MODSEQ, Gmail's X-GM-*) costs nothing.
//! A BODYSTRUCTURE is handed to async-imap's own parser (imap-proto) only when it names a file.

use std::borrow::Cow;
use std::ops::Range;

use async_imap::imap_proto::{AttributeValue, Response};
use chrono::{DateTime, FixedOffset};

/// What one FETCH returned: the items of each message, as ranges of one buffer (the internal
/// date read already).
#[derive(Debug, Default)]
pub struct Fetched {
    data: Vec<u8>,
    messages: Vec<MessageItems>,
    /// FETCH responses that could not be read as far as their UID.
    unreadable: usize,
}

/// The items of one message's FETCH response that a sync reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageItems {
    pub uid: u32,
    /// The message has the `\Draft` flag.
    pub draft: bool,
    /// The response could not be read to its end: the message is recorded as unreadable
    /// rather than fetched again and again.
    pub broken: bool,
    /// Read as the response is (a backfill fetching ranges looks at it before parsing).
    internal_date: Option<DateTime<FixedOffset>>,
    structure: Option<Range<usize>>,
    /// The `BODY[…]` section (empty for NIL).
    section: Option<Range<usize>>,
}

impl MessageItems {
    /// INTERNALDATE: when the server received the message.
    pub fn internal_date(&self) -> Option<DateTime<FixedOffset>> {
        self.internal_date
    }
}

/// A FETCH response that does not follow the IMAP syntax.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unreadable FETCH response (UID {uid:?}) at byte {at}: {what}")]
pub struct ResponseError {
    pub uid: Option<u32>,
    pub at: usize,
    pub what: &'static str,
}

impl Fetched {
    /// The messages, in the order the server sent them.
    pub fn messages(&self) -> &[MessageItems] {
        &self.messages
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// How many FETCH responses could not be read as far as their UID (their messages are
    /// missing from [`Self::messages`]).
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    /// Keeps only the messages `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&MessageItems) -> bool) {
        self.messages.retain(keep);
    }

    /// Adds a message whose response could not be read, known by its UID from elsewhere.
    pub fn add_unreadable(&mut self, uid: u32) {
        self.messages.push(MessageItems {
            uid,
            draft: false,
            broken: true,
            internal_date: None,
            structure: None,
            section: None,
        });
    }

    /// The `BODY[…]` section fetched, if the response carried one.
    pub fn section(&self, m: &MessageItems) -> Option<&[u8]> {
        m.section.clone().map(|r| &self.data[r])
    }

    /// The file names of the attachments the message's BODYSTRUCTURE describes (see
    /// [`super::imap::attachment_names`]).
    pub fn attachment_names(&self, m: &MessageItems) -> Vec<String> {
        let Some(raw) = m.structure.clone().map(|r| &self.data[r]) else {
            return Vec::new();
        };
        // A file name is a `name` or `filename` parameter (maybe `name*`, RFC 2231).
        let names_a_file = memchr::memchr2_iter(b'n', b'N', raw)
            .any(|at| raw.get(at..at + 4).is_some_and(|w| w.eq_ignore_ascii_case(b"name")));
        if !names_a_file {
            return Vec::new();
        }
        let mut response = b"* 1 FETCH (BODYSTRUCTURE ".to_vec();
        response.extend_from_slice(raw);
        response.extend_from_slice(b")\r\n");
        match Response::parse(&response) {
            Ok((_, Response::Fetch(_, attrs))) => attrs
                .iter()
                .find_map(|a| match a {
                    AttributeValue::BodyStructure(bs) => Some(super::imap::attachment_names(bs)),
                    _ => None,
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Reads one untagged response. A FETCH response that carries a section, or that cannot be
    /// read to its end but names its UID, adds a message; other responses (EXISTS, EXPUNGE, a
    /// flag change sent meanwhile) are passed over. An error names what could not be read;
    /// the message is kept, marked broken, when its UID was read.
    pub fn read_response(&mut self, response: &[u8]) -> Result<(), ResponseError> {
        let mut r = Reader { b: response, pos: 0 };
        if !r.eat(b"* ") || !r.b.get(r.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(());
        }
        let _seq = r.atom();
        if !r.eat(b" FETCH (") {
            return Ok(());
        }
        let mark = self.data.len();
        let mut m = MessageItems {
            uid: 0,
            draft: false,
            broken: false,
            internal_date: None,
            structure: None,
            section: None,
        };
        let mut uid = None;
        let outcome = self.read_items(&mut r, &mut m, &mut uid);
        match (outcome, uid) {
            (Ok(()), Some(uid)) if m.section.is_some() => self.messages.push(MessageItems { uid, ..m }),
            (Ok(()), _) => self.data.truncate(mark),
            (Err(what), uid) => {
                if let Some(uid) = uid {
                    self.messages.push(MessageItems { uid, broken: true, ..m });
                } else {
                    self.data.truncate(mark);
                    self.unreadable += 1;
                }
                return Err(ResponseError { uid, at: r.pos, what });
            }
        }
        Ok(())
    }

    fn read_items(
        &mut self,
        r: &mut Reader<'_>,
        m: &mut MessageItems,
        uid: &mut Option<u32>,
    ) -> Result<(), &'static str> {
        loop {
            if r.eat(b")") {
                return Ok(());
            }
            let name = r.item_name()?;
            if !r.eat(b" ") {
                return Err("no value after an item name");
            }
            let value = r.value(0)?;
            if name.eq_ignore_ascii_case(b"UID") {
                let Value::Atom(n) = value else {
                    return Err("UID is not a number");
                };
                *uid = Some(number(n).ok_or("UID is not a number")?);
            } else if name.eq_ignore_ascii_case(b"FLAGS") {
                let Value::List(list) = value else {
                    return Err("FLAGS is not a list");
                };
                m.draft = list
                    .split(|&b| matches!(b, b' ' | b'(' | b')'))
                    .any(|flag| flag.eq_ignore_ascii_case(b"\\Draft"));
            } else if name.eq_ignore_ascii_case(b"INTERNALDATE") {
                m.internal_date = internal_date(&value.text().ok_or("INTERNALDATE is not a string")?);
            } else if name.eq_ignore_ascii_case(b"BODYSTRUCTURE") {
                let Value::List(list) = value else {
                    return Err("BODYSTRUCTURE is not a list");
                };
                m.structure = Some(self.keep(list));
            } else if name.len() > 5 && name[..5].eq_ignore_ascii_case(b"BODY[") {
                m.section = Some(match value {
                    Value::Nil => self.data.len()..self.data.len(),
                    v => self.keep(&v.text().ok_or("the section is not a string")?),
                });
            }
            if !r.eat(b" ") && r.b.get(r.pos) != Some(&b')') {
                return Err("items not separated by a space");
            }
        }
    }

    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let from = self.data.len();
        self.data.extend_from_slice(bytes);
        from..self.data.len()
    }
}

/// The UIDs of a `* SEARCH` response (none for any other response). Anything that is not a
/// number (a `(MODSEQ n)` at the end, RFC 7162) is passed over.
pub fn search_uids(response: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let line = response.strip_suffix(b"\r\n").unwrap_or(response);
    let rest = match line.get(..9) {
        Some(head) if head.eq_ignore_ascii_case(b"* SEARCH ") => &line[9..],
        _ => &[][..],
    };
    let mut in_parens = 0usize;
    rest.split(|&b| b == b' ').filter_map(move |word| {
        let opens = word.iter().filter(|&&b| b == b'(').count();
        let closes = word.iter().filter(|&&b| b == b')').count();
        let inside = in_parens > 0 || opens > 0;
        in_parens = (in_parens + opens).saturating_sub(closes);
        if inside { None } else { number(word) }
    })
}

/// Month names as mail dates write them (INTERNALDATE here, the Date field in `headers`).
pub(super) const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// An INTERNALDATE (`date-time` of RFC 3501: `"17-Jul-1996 02:44:25 -0700"`, the day maybe
/// padded with a space).
fn internal_date(raw: &[u8]) -> Option<DateTime<FixedOffset>> {
    let raw = raw.trim_ascii_start();
    let (day, rest) = raw.split_at(raw.iter().position(|&b| b == b'-')?);
    let rest = &rest[1..];
    let month = MONTHS
        .iter()
        .position(|m| rest.get(..3).is_some_and(|r| r.eq_ignore_ascii_case(m)))?;
    // "-yyyy hh:mm:ss +zzzz"
    let rest = rest.get(3..)?;
    if rest.len() != 20 || rest[0] != b'-' || rest[5] != b' ' || rest[8] != b':' || rest[11] != b':' || rest[14] != b' '
    {
        return None;
    }
    let num = |b: &[u8]| number(b).and_then(|n| i32::try_from(n).ok());
    let (year, hour, minute, second) = (
        num(&rest[1..5])?,
        num(&rest[6..8])?,
        num(&rest[9..11])?,
        num(&rest[12..14])?,
    );
    let sign = match rest[15] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zone = num(&rest[16..20])?;
    let offset = FixedOffset::east_opt(sign * ((zone / 100) * 3600 + (zone % 100) * 60))?;
    let date = chrono::NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()? + 1, u32::try_from(num(day)?).ok()?)?;
    // A leap second (60) is taken as the second before it.
    let time = chrono::NaiveTime::from_hms_opt(hour as u32, minute as u32, second.min(59) as u32)?;
    date.and_time(time).and_local_timezone(offset).single()
}

fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A value of a FETCH item.
enum Value<'a> {
    /// An atom or a number.
    Atom(&'a [u8]),
    /// A quoted string (unescaped) or a literal.
    String(Cow<'a, [u8]>),
    Nil,
    /// A parenthesized list, parentheses included, as sent.
    List(&'a [u8]),
}

impl<'a> Value<'a> {
    fn text(self) -> Option<Cow<'a, [u8]>> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Lists nest no deeper than this (a BODYSTRUCTURE nests one level per MIME level).
const MAX_DEPTH: usize = 64;

/// A position in one response.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Steps over `expected` (ASCII case ignored) if it comes next.
    fn eat(&mut self, expected: &[u8]) -> bool {
        let ok = self
            .b
            .get(self.pos..self.pos + expected.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(expected));
        if ok {
            self.pos += expected.len();
        }
        ok
    }

    /// An atom, a number or a flag: up to the next space, parenthesis or line end.
    fn atom(&mut self) -> &'a [u8] {
        let from = self.pos;
        while let Some(&b) = self.b.get(self.pos)
            && !matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n')
        {
            self.pos += 1;
        }
        &self.b[from..self.pos]
    }

    /// An item name, with its section and partial range (`BODY[HEADER.FIELDS (FROM TO)]<0>`):
    /// spaces and parentheses inside the brackets belong to it.
    fn item_name(&mut self) -> Result<&'a [u8], &'static str> {
        let from = self.pos;
        while let Some(&b) = self.b.get(self.pos) {
            match b {
                b'[' => {
                    let close = memchr::memchr(b']', &self.b[self.pos..]).ok_or("a section is not closed")?;
                    self.pos += close + 1;
                }
                b' ' | b'(' | b')' | b'\r' | b'\n' => break,
                _ => self.pos += 1,
            }
        }
        if self.pos == from {
            return Err("an item name is missing");
        }
        Ok(&self.b[from..self.pos])
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, &'static str> {
        match self.b.get(self.pos) {
            None => Err("the response ends early"),
            Some(b'(') => {
                if depth >= MAX_DEPTH {
                    return Err("lists nested too deep");
                }
                let from = self.pos;
                self.pos += 1;
                loop {
                    if self.eat(b")") {
                        return Ok(Value::List(&self.b[from..self.pos]));
                    }
                    self.value(depth + 1)?;
                    // The parts of a multipart BODYSTRUCTURE follow each other with no space.
                    if !self.eat(b" ") && !matches!(self.b.get(self.pos), Some(b')' | b'(')) {
                        return Err("list items not separated by a space");
                    }
                }
            }
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b'~') if self.b.get(self.pos + 1) == Some(&b'{') => {
                self.pos += 1;
                self.literal()
            }
            Some(_) => {
                let atom = self.atom();
                if atom.is_empty() {
                    Err("a value is missing")
                } else if atom.eq_ignore_ascii_case(b"NIL") {
                    Ok(Value::Nil)
                } else {
                    Ok(Value::Atom(atom))
                }
            }
        }
    }

    fn quoted(&mut self) -> Result<Value<'a>, &'static str> {
        let from = self.pos + 1;
        let mut i = from;
        let mut escaped = false;
        loop {
            match self.b.get(i) {
                None | Some(b'\r' | b'\n') => return Err("a quoted string is not closed"),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        let raw = &self.b[from..i];
        if !escaped {
            return Ok(Value::String(Cow::Borrowed(raw)));
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut bytes = raw.iter();
        while let Some(&b) = bytes.next() {
            out.push(if b == b'\\' { *bytes.next().unwrap_or(&b) } else { b });
        }
        Ok(Value::String(Cow::Owned(out)))
    }

    /// `{n}` CRLF and n bytes (the reader stands on the brace).
    fn literal(&mut self) -> Result<Value<'a>, &'static str> {
        let rest = &self.b[self.pos + 1..];
        let close = memchr::memchr(b'}', rest).ok_or("a literal's length is not closed")?;
        let n = number(&rest[..close]).ok_or("a literal's length is not a number")? as usize;
        let start = self.pos + 1 + close + 1;
        if self.b.get(start..start + 2) != Some(b"\r\n") {
            return Err("a literal's length is not followed by a line end");
        }
        let data = self.b.get(start + 2..start + 2 + n).ok_or("a literal is cut short")?;
        self.pos = start + 2 + n;
        Ok(Value::String(Cow::Borrowed(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(responses: &[&[u8]]) -> (Fetched, Vec<ResponseError>) {
        let mut f = Fetched::default();
        let errors = responses.iter().filter_map(|r| f.read_response(r).err()).collect();
        (f, errors)
    }

    #[test]
    fn the_items_a_sync_needs() {
        let (f, errors) = read(&[
            b"* 12 FETCH (UID 7 FLAGS (\\Seen \\Draft) INTERNALDATE \" 4-Dec-2026 09:05:01 +0100\" \
              RFC822.SIZE 2310 BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL) \
              BODY[HEADER.FIELDS (FROM SUBJECT)] {33}\r\nFrom: a@b.example\r\nSubject: x\r\n\r\n)\r\n",
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let [m] = f.messages() else {
            panic!("{:?}", f.messages())
        };
        assert_eq!((m.uid, m.draft, m.broken), (7, true, false));
        assert_eq!(f.section(m), Some(&b"From: a@b.example\r\nSubject: x\r\n\r\n"[..]));
        assert_eq!(
            m.internal_date().map(|d| d.to_rfc3339()),
            Some("2026-12-04T09:05:01+01:00".to_owned())
        );
        assert!(f.attachment_names(m).is_empty());
    }

    #[test]
    fn items_in_any_order_and_case_with_unknown_ones_skipped() {
        let (f, errors) = read(&[
            b"* 1 fetch (body[header.fields (from)] \"From: \\\"q\\\" <a@b.example>\" \
              X-GM-LABELS (\"\\\\Inbox\" {3}\r\nA B) MODSEQ (42) flags () uid 9)\r\n",
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let [m] = f.messages() else {
            panic!("{:?}", f.messages())
        };
        assert_eq!((m.uid, m.draft), (9, false));
        assert_eq!(f.section(m), Some(&b"From: \"q\" <a@b.example>"[..]));
        assert_eq!(m.internal_date(), None);
    }

    #[test]
    fn other_responses_and_flag_changes_are_passed_over() {
        let (f, errors) = read(&[
            b"* 3 EXISTS\r\n",
            b"* OK [HIGHESTMODSEQ 4] ok\r\n",
            b"* 2 EXPUNGE\r\n",
            b"* 1 FETCH (UID 4 FLAGS (\\Seen))\r\n",
            b"* 2 FETCH (UID 5 BODY[] NIL)\r\n",
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let [m] = f.messages() else {
            panic!("{:?}", f.messages())
        };
        assert_eq!(m.uid, 5);
        assert_eq!(f.section(m), Some(&b""[..]), "NIL is an empty section");
    }

    #[test]
    fn a_broken_response_keeps_its_uid_and_says_what_is_wrong() {
        let (f, errors) = read(&[
            b"* 1 FETCH (UID 4 BODY[] {50}\r\nshort)\r\n",
            b"* 2 FETCH (UID 5 INTERNALDATE \"4-Dec-2026)\r\n",
            b"* 3 FETCH (FLAGS (((\r\n",
            b"* 4 FETCH (UID ",
            b"* 4 FETCH (UID 6 BODY[HEADER {2}\r\n\r\n)\r\n",
            b"* 5 FETCH (UID 7 FLAGS (\\Seen)BODY[] NIL)\r\n",
        ]);
        let uids: Vec<_> = f.messages().iter().map(|m| (m.uid, m.broken)).collect();
        assert_eq!(uids, [(4, true), (5, true), (6, true), (7, true)]);
        assert_eq!(f.unreadable(), 2, "two responses broke before their UID");
        let what: Vec<_> = errors.iter().map(|e| (e.uid, e.what)).collect();
        assert_eq!(
            what,
            [
                (Some(4), "a literal is cut short"),
                (Some(5), "a quoted string is not closed"),
                (None, "a value is missing"),
                (None, "the response ends early"),
                (Some(6), "a section is not closed"),
                (Some(7), "items not separated by a space"),
            ]
        );
        assert!(f.messages().iter().all(|m| f.section(m).is_none()));
    }

    #[test]
    fn internal_dates_as_servers_write_them() {
        let parsed = |s: &str| internal_date(s.as_bytes()).map(|d| d.to_rfc3339());
        assert_eq!(
            parsed("17-Jul-1996 02:44:25 -0700").as_deref(),
            Some("1996-07-17T02:44:25-07:00")
        );
        assert_eq!(
            parsed(" 4-dec-2026 23:59:60 +0000").as_deref(),
            Some("2026-12-04T23:59:59+00:00")
        );
        assert_eq!(
            parsed(" 4-dec-2026 23:59:59 +0530").as_deref(),
            Some("2026-12-04T23:59:59+05:30")
        );
        for bad in [
            "",
            "4-Dez-2026 10:00:00 +0000",
            "31-Feb-2026 10:00:00 +0000",
            "4-Dec-2026 10:00:00",
            "4-Dec-2026 24:00:00 +0000",
            "4-Dec-2026T10:00:00 +0000",
            "x-Dec-2026 10:00:00 +0000",
        ] {
            assert_eq!(parsed(bad), None, "{bad:?}");
        }
        // The same as chrono's own parsing, which async-imap used.
        for s in [
            "1-Jan-2000 00:00:00 +0000",
            "29-Feb-2024 12:30:45 -1130",
            "09-Sep-2026 09:09:09 +0100",
        ] {
            let chrono = DateTime::parse_from_str(s, "%d-%b-%Y %H:%M:%S %z").ok();
            assert_eq!(internal_date(s.as_bytes()), chrono, "{s}");
        }
    }

    #[test]
    fn search_responses() {
        let uids = |r: &[u8]| search_uids(r).collect::<Vec<_>>();
        assert_eq!(uids(b"* SEARCH 2 84 882\r\n"), [2, 84, 882]);
        assert_eq!(uids(b"* search 5 (MODSEQ 917162500)\r\n"), [5]);
        assert_eq!(uids(b"* SEARCH\r\n"), Vec::<u32>::new());
        assert_eq!(uids(b"* 3 EXISTS\r\n"), Vec::<u32>::new());
        assert_eq!(uids(b"* SEARCH 1 x 4294967296 3\r\n"), [1, 3]);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut r = b"* 1 FETCH (UID 3 BODYSTRUCTURE ".to_vec();
        r.extend(std::iter::repeat_n(b'(', 100_000));
        let (f, errors) = read(&[&r]);
        assert_eq!(errors[0].what, "lists nested too deep");
        assert_eq!(f.messages()[0].uid, 3);
    }

    #[test]
    fn attachment_names_come_from_the_structure() {
        let structure: &[u8] = b"* 1 FETCH (UID 2 BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL)\
            (\"APPLICATION\" \"PDF\" (\"NAME\" \"Offer Q1.pdf\") NIL NIL \"BASE64\" 2000 NIL (\"ATTACHMENT\" (\"FILENAME*\" \"utf-8''Angebot%20Q1.pdf\")) NIL NIL) \
            \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL) BODY[HEADER.FIELDS (FROM)] {2}\r\n\r\n)\r\n";
        let (f, errors) = read(&[structure]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(f.attachment_names(&f.messages()[0]), ["Angebot Q1.pdf"]);
    }

    #[test]
    fn values_are_kept_apart_per_message() {
        let responses: Vec<Vec<u8>> = (1..=50)
            .map(|i| {
                format!(
                    "* {i} FETCH (UID {i} BODY[] {{{}}}\r\nmessage {i})\r\n",
                    format!("message {i}").len()
                )
                .into_bytes()
            })
            .collect();
        let refs: Vec<&[u8]> = responses.iter().map(Vec::as_slice).collect();
        let (f, errors) = read(&refs);
        assert!(errors.is_empty());
        for (i, m) in (1..).zip(f.messages()) {
            assert_eq!(m.uid, i);
            assert_eq!(f.section(m), Some(format!("message {i}").as_bytes()));
        }
        assert_eq!(f.len(), 50);
    }
}
