//! The header fields Rapport reads from a message, parsed leniently: a broken header yields
//! `None` or an empty list, never an error, so one bad message never stalls a mailbox.
//! Header blocks of the plain shape (most of what IMAP returns) are read by the `simple`
//! module, the rest by mail-parser, with the same results.

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders};

use crate::address;

mod simple;

/// The header fields IMAP fetches for each message (`BODY.PEEK[HEADER.FIELDS (...)]`).
pub const FETCHED_FIELDS: &str = "MESSAGE-ID FROM TO CC BCC DATE SUBJECT IN-REPLY-TO REFERENCES \
    AUTO-SUBMITTED PRECEDENCE LIST-ID LIST-UNSUBSCRIBE CONTENT-TYPE X-AUTOREPLY X-AUTORESPOND \
    X-AUTO-RESPONSE-SUPPRESS X-FAILED-RECIPIENTS";

/// What the matcher needs to know about one message.
///
/// Stored as JSON in `mail_seen` for matching again later: fields left at their default are
/// not written (most messages have no Cc, no References, no list headers), and a missing
/// field reads back as its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MailHeaders {
    /// Without angle brackets. `None` when the message has none (an id is synthesized later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Normalized addresses; malformed ones are dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339")]
    pub date: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_reply_to: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_submitted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precedence: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub has_list_id: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub has_list_unsubscribe: bool,
    /// `X-Autoreply`, `X-Autorespond` or a Microsoft auto-response marker.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub vendor_auto_reply: bool,
    /// `multipart/report; report-type=delivery-status`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_delivery_report: bool,
    /// Recipients a bounce names (from the DSN part, or `X-Failed-Recipients`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_recipients: Vec<String>,
    /// Flagged `\Draft` by the server (IMAP flag, Maildir `D`): never sent, never counted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
    /// File names of the attachments, from the MIME structure (IMAP: BODYSTRUCTURE; Maildir:
    /// the message's own parts). Bodies are never kept; names feed the proposal rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// A date as chrono writes it (`2026-11-23T10:00:00Z`, read back by its `Deserialize`), in one
/// string: chrono's own `Serialize` goes through `Display`, which serde_json takes a character
/// at a time (1,800 instructions a date, measured under callgrind); see [`crate::clock::rfc3339`].
fn rfc3339<S: serde::Serializer>(date: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match date {
        Some(d) => s.serialize_str(&crate::clock::rfc3339(*d, true)),
        None => s.serialize_none(),
    }
}

impl MailHeaders {
    /// Parses a whole message or just its header block.
    pub fn parse(raw: &[u8]) -> Option<MailHeaders> {
        let mut h = match simple::parse(raw) {
            Some(h) => h,
            None => parse_any(raw)?,
        };
        if h.is_delivery_report || looks_like_bounce_sender(&h) {
            for r in dsn_failed_recipients(raw) {
                if !h.failed_recipients.contains(&r) {
                    h.failed_recipients.push(r);
                }
            }
        }
        Some(h)
    }

    /// The sender, if there is exactly one usable From address (the usual case).
    pub fn sender(&self) -> Option<&str> {
        self.from.first().map(String::as_str)
    }

    /// Every recipient (To, Cc, Bcc).
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.to.iter().chain(&self.cc).chain(&self.bcc).map(String::as_str)
    }

    /// The thread this message belongs to: the first id of References, else In-Reply-To, else
    /// its own id.
    pub fn thread_key(&self, own_id: &str) -> String {
        self.references
            .first()
            .or(self.in_reply_to.first())
            .cloned()
            .unwrap_or_else(|| own_id.to_owned())
    }

    /// The Message-ID, or a stable id made from the fields every copy of the message shares.
    pub fn effective_message_id(&self) -> String {
        if let Some(id) = &self.message_id {
            return id.clone();
        }
        let mut h = Fnv64::default();
        for part in [&self.from, &self.to, &self.cc] {
            for a in part {
                h.write(a.as_bytes());
                h.write(b",");
            }
            h.write(b"|");
        }
        if let Some(d) = self.date {
            h.write(d.timestamp().to_string().as_bytes());
        }
        h.write(b"|");
        h.write(self.subject.as_deref().unwrap_or("").as_bytes());
        format!("rapport-synthetic-{:016x}@local", h.0)
    }
}

/// Any message or header block, by mail-parser (`None` when it finds no header field).
fn parse_any(raw: &[u8]) -> Option<MailHeaders> {
    let msg = MessageParser::default().parse(raw)?;
    if msg.headers().is_empty() {
        return None;
    }
    Some(from_message(&msg))
}

fn from_message(msg: &Message<'_>) -> MailHeaders {
    // Fields read raw (most of them mail-parser knows only by name), in one pass over the
    // header; the last occurrence wins, as with `Message::header_raw`.
    let mut other = OtherFields::default();
    for h in msg.headers() {
        let name = match &h.name {
            HeaderName::AutoSubmitted => "Auto-Submitted",
            HeaderName::Other(name) => name.as_ref(),
            _ => continue,
        };
        let slot = match name {
            n if n.eq_ignore_ascii_case("Auto-Submitted") => &mut other.auto_submitted,
            n if n.eq_ignore_ascii_case("Precedence") => &mut other.precedence,
            n if n.eq_ignore_ascii_case("X-Autoreply") => &mut other.x_autoreply,
            n if n.eq_ignore_ascii_case("X-Autorespond") => &mut other.x_autorespond,
            n if n.eq_ignore_ascii_case("X-Auto-Response-Suppress") => &mut other.x_auto_response_suppress,
            n if n.eq_ignore_ascii_case("X-Failed-Recipients") => &mut other.x_failed_recipients,
            _ => continue,
        };
        *slot = msg
            .raw_message()
            .get(h.offset_start as usize..h.offset_end as usize)
            .and_then(|v| std::str::from_utf8(v).ok());
    }
    let content_type = msg
        .header(HeaderName::ContentType)
        .and_then(HeaderValue::as_content_type);
    let is_delivery_report = content_type.is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|r| r.eq_ignore_ascii_case("delivery-status"))
    });
    let mut h = MailHeaders {
        message_id: msg.message_id().map(clean_id).filter(|s| !s.is_empty()),
        from: addresses(msg.from()),
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        bcc: addresses(msg.bcc()),
        date: msg
            .date()
            .and_then(|d| Utc.timestamp_opt(d.to_timestamp(), 0).single())
            .filter(|d| d.timestamp() > 0),
        subject: msg.subject().map(|s| s.trim().to_owned()),
        in_reply_to: ids(msg.in_reply_to()),
        references: ids(msg.references()),
        has_list_id: !msg.list_id().is_empty(),
        has_list_unsubscribe: !msg.list_unsubscribe().is_empty(),
        is_delivery_report,
        attachments: attachment_names(msg),
        ..MailHeaders::default()
    };
    other.apply(&mut h);
    h
}

/// The file names of a parsed message's attachments (none when only headers were parsed).
fn attachment_names(msg: &Message<'_>) -> Vec<String> {
    let mut names: Vec<String> = msg
        .attachments()
        .filter_map(|a| a.attachment_name())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    names.dedup();
    names
}

/// Raw values of the header fields read as text.
#[derive(Default)]
struct OtherFields<'a> {
    auto_submitted: Option<&'a str>,
    precedence: Option<&'a str>,
    x_autoreply: Option<&'a str>,
    x_autorespond: Option<&'a str>,
    x_auto_response_suppress: Option<&'a str>,
    x_failed_recipients: Option<&'a str>,
}

impl OtherFields<'_> {
    /// Sets what these fields tell: automated-mail markers and failed recipients.
    fn apply(&self, h: &mut MailHeaders) {
        let text = |v: Option<&str>| v.map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty());
        h.auto_submitted = text(self.auto_submitted);
        h.precedence = text(self.precedence);
        h.vendor_auto_reply = text(self.x_autoreply).is_some_and(|v| v != "no")
            || text(self.x_autorespond).is_some()
            || text(self.x_auto_response_suppress).is_some_and(|v| v.contains("oof") || v == "all");
        h.failed_recipients = self
            .x_failed_recipients
            .map(|v| v.split(',').filter_map(|a| address::normalize(a).ok()).collect())
            .unwrap_or_default();
    }
}

fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address())
            .filter_map(|s| address::normalize(s).ok())
            .collect()
    })
    .unwrap_or_default()
}

fn clean_id(s: &str) -> String {
    s.trim().trim_start_matches('<').trim_end_matches('>').trim().to_owned()
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![clean_id(t)],
        HeaderValue::TextList(l) => l.iter().map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect()
}

/// Whether a raw header block may belong to a bounce: a cheap test, before parsing, of
/// everything [`MailHeaders::parse`] reads a bounce by (a `multipart/report` content type, a
/// `mailer-daemon` or `postmaster` sender). It may say yes to a message that only mentions
/// one of them; it never says no to a bounce.
pub fn may_be_bounce(raw: &[u8]) -> bool {
    const MARKS: [&[u8]; 3] = [b"multipart/report", b"mailer-daemon", b"postmaster"];
    let at = |i: usize| {
        // The second letter first: it rules out almost every `m` and `p` of a header block.
        let second = raw.get(i + 1).map(u8::to_ascii_lowercase);
        MARKS
            .iter()
            .any(|m| second == Some(m[1]) && raw.get(i..i + m.len()).is_some_and(|w| w.eq_ignore_ascii_case(m)))
    };
    // Every mark starts with `m` or `p`: compare only there (found a vector at a time).
    memchr::memchr2_iter(b'm', b'M', raw).any(at) || memchr::memchr2_iter(b'p', b'P', raw).any(at)
}

fn looks_like_bounce_sender(h: &MailHeaders) -> bool {
    h.sender().is_some_and(|s| {
        let local = s.split('@').next().unwrap_or("");
        local == "mailer-daemon" || local == "postmaster"
    })
}

/// The recipients a delivery-status notification reports as failed: each `Final-Recipient`
/// (or `Original-Recipient`) whose block has `Action: failed`.
pub fn dsn_failed_recipients(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut flush = |cur: &mut Option<String>, failed: bool| {
        if let Some(a) = cur.take()
            && failed
            && !out.contains(&a)
        {
            out.push(a);
        }
    };
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "final-recipient" | "original-recipient" => {
                let addr = value.split_once(';').map(|(_, a)| a).unwrap_or(value);
                if let Ok(a) = address::normalize(addr)
                    && current.is_none()
                {
                    current = Some(a);
                }
            }
            "action" => {
                let failed = value.trim().eq_ignore_ascii_case("failed");
                flush(&mut current, failed);
            }
            _ => {}
        }
    }
    out
}

/// FNV-1a, 64 bit: a hash that is the same on every run and every Rust version.
#[derive(Debug)]
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_json_leaves_out_defaults_and_reads_back() {
        let raw = b"Message-ID: <abc@acme.example>\r\nFrom: sara@acme.example\r\nTo: alice@example.com\r\n\
            Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nSubject: Hello\r\n\r\n";
        let h = MailHeaders::parse(raw).unwrap();
        let json = serde_json::to_string(&h).unwrap();
        for absent in [
            "cc",
            "references",
            "has_list_id",
            "draft",
            "attachments",
            "failed_recipients",
        ] {
            assert!(!json.contains(&format!("\"{absent}\"")), "{absent} written: {json}");
        }
        assert_eq!(serde_json::from_str::<MailHeaders>(&json).unwrap(), h);
        // The date as chrono's own serializer writes it (rows written before read the same).
        let chrono_date = serde_json::to_string(&h.date.unwrap()).unwrap();
        assert!(json.contains(&format!("\"date\":{chrono_date}")), "{json}");
        // Rows written before defaults were left out (every field present) read the same.
        let mut full = serde_json::to_value(&h).unwrap();
        for (k, v) in [
            ("cc", serde_json::json!([])),
            ("draft", false.into()),
            ("precedence", serde_json::Value::Null),
        ] {
            full[k] = v;
        }
        assert_eq!(serde_json::from_value::<MailHeaders>(full).unwrap(), h);
    }

    #[test]
    fn reads_the_fields_that_matter() {
        let raw = b"Message-ID: <abc@acme.example>\r\nFrom: Sara Lind <Sara.Lind@Acme.example>\r\n\
            To: alice@example.com, \"Bob\" <bob@example.com>\r\nCc: x@y.example\r\n\
            Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nSubject: =?utf-8?q?R=C3=A9union?=\r\n\
            In-Reply-To: <m1@example.com>\r\nReferences: <m0@example.com> <m1@example.com>\r\n\
            Auto-Submitted: auto-replied\r\n\r\nbody\r\n";
        let h = MailHeaders::parse(raw).unwrap();
        assert_eq!(h.message_id.as_deref(), Some("abc@acme.example"));
        assert_eq!(h.from, ["sara.lind@acme.example"]);
        assert_eq!(h.to, ["alice@example.com", "bob@example.com"]);
        assert_eq!(h.subject.as_deref(), Some("Réunion"));
        assert_eq!(h.date.unwrap().to_rfc3339(), "2026-11-02T09:00:00+00:00");
        assert_eq!(h.in_reply_to, ["m1@example.com"]);
        assert_eq!(h.references, ["m0@example.com", "m1@example.com"]);
        assert_eq!(h.thread_key("abc@acme.example"), "m0@example.com");
        assert_eq!(h.auto_submitted.as_deref(), Some("auto-replied"));
    }

    #[test]
    fn reads_the_fields_known_only_by_name_whatever_their_case() {
        let raw = b"From: a@acme.example\r\nPRECEDENCE: Bulk\r\nx-autorespond: yes\r\n\
            X-Failed-Recipients: Gone@Acme.example, not an address\r\n\
            AUTO-SUBMITTED: no\r\nAuto-Submitted:  Auto-Generated \r\n\r\n";
        let h = MailHeaders::parse(raw).unwrap();
        assert_eq!(h.precedence.as_deref(), Some("bulk"));
        assert_eq!(
            h.auto_submitted.as_deref(),
            Some("auto-generated"),
            "the last one counts"
        );
        assert!(h.vendor_auto_reply);
        assert_eq!(h.failed_recipients, ["gone@acme.example"]);
        for (field, expected) in [
            ("X-Autoreply: yes", true),
            ("X-Autoreply: no", false),
            ("X-Auto-Response-Suppress: OOF, AutoReply", true),
            ("X-Auto-Response-Suppress: All", true),
            ("X-Auto-Response-Suppress: DR", false),
        ] {
            let raw = format!("From: a@acme.example\r\n{field}\r\n\r\n");
            let h = MailHeaders::parse(raw.as_bytes()).unwrap();
            assert_eq!(h.vendor_auto_reply, expected, "{field}");
            assert_eq!(h.precedence, None);
        }
    }

    #[test]
    fn missing_message_id_gets_a_stable_synthetic_one() {
        let raw = b"From: a@acme.example\r\nTo: alice@example.com\r\nSubject: hi\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n";
        let a = MailHeaders::parse(raw).unwrap();
        let b = MailHeaders::parse(raw).unwrap();
        assert_eq!(a.message_id, None);
        assert_eq!(a.effective_message_id(), b.effective_message_id());
        assert!(a.effective_message_id().starts_with("rapport-synthetic-"));
    }

    #[test]
    fn delivery_reports_name_failed_recipients() {
        let raw = b"From: MAILER-DAEMON@mx.acme.example\r\nTo: alice@example.com\r\nSubject: Undelivered\r\n\
            MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nsorry\r\n\
            --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.example\r\n\r\n\
            Final-Recipient: rfc822; gone@acme.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
            Final-Recipient: rfc822; slow@acme.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n--b--\r\n";
        let h = MailHeaders::parse(raw).unwrap();
        assert!(h.is_delivery_report);
        assert_eq!(h.failed_recipients, ["gone@acme.example"]);
    }

    #[test]
    fn the_bounce_precheck_never_misses_what_parsing_calls_a_bounce() {
        let bounces: [&[u8]; 4] = [
            b"From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\nSubject: Undelivered\r\n\r\n",
            b"From: postmaster@acme.example\r\n\r\n",
            b"From: x@y.example\r\nContent-Type: Multipart/Report;\r\n report-type=delivery-status; boundary=b\r\n\r\n",
            b"From: x@y.example\r\nContent-Type: multipart/report; report-type=delivery-status\r\n\r\n",
        ];
        for raw in bounces {
            let h = MailHeaders::parse(raw).unwrap();
            assert!(
                h.is_delivery_report || looks_like_bounce_sender(&h),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert!(may_be_bounce(raw), "{}", String::from_utf8_lossy(raw));
        }
        for raw in [
            &b"From: sara@acme.example\r\nSubject: Proposal\r\nContent-Type: multipart/mixed\r\n\r\n"[..],
            b"From: m@p.example\r\nTo: mp@pm.example\r\n\r\n",
            b"",
            b"m",
            b"\xffpostmaste",
        ] {
            assert!(!may_be_bounce(raw), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn junk_never_panics() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\x00\xff\xfe garbage without headers".to_vec(),
            b"Subject: \xe9t\xe9 caf\xe9\r\nFrom: \xff@@\r\n\r\n".to_vec(),
            format!(
                "Subject: {}\r\nReferences: {}\r\n\r\n",
                "x".repeat(200_000),
                "<a@b> ".repeat(5_000)
            )
            .into_bytes(),
            b"From: =?bogus?x?zzz?= <a@b.example>\r\nDate: not a date\r\nMessage-ID: <>\r\n\r\n".to_vec(),
        ];
        for raw in cases {
            if let Some(h) = MailHeaders::parse(&raw) {
                let _ = h.effective_message_id();
            }
        }
        let h =
            MailHeaders::parse(b"From: =?bogus?x?zzz?= <a@b.example>\r\nDate: not a date\r\nMessage-ID: <>\r\n\r\n")
                .unwrap();
        assert_eq!(h.message_id, None);
        assert_eq!(h.date, None);
        assert_eq!(h.from, ["a@b.example"]);
    }
}
