//! Differential tests: wherever the plain reader answers, its answer is mail-parser's.

use super::super::parse_any;
use super::*;

/// splitmix64: the same sequence in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    /// Mostly one of the first `plain` of `from` (the ones of the plain shape), so that a good
    /// part of the blocks are plain throughout and the rest differ from that in one place or two.
    fn mostly<'a>(&mut self, (from, plain): (&[&'a str], usize)) -> &'a str {
        if self.chance(85) {
            from[self.below(plain)]
        } else {
            self.pick(from)
        }
    }
}

/// Each pool: the values, and how many of them (the first ones) are of the plain shape.
type Pool = (&'static [&'static str], usize);

const ADDRESSES: Pool = (
    &[
        "a@b.example",
        "Lead.Name@Company.Example",
        "Name <x@y.example>",
        "\"Smith, John\" <j@y.example>",
        "\"Q\" <q@y.example>",
        "<bare@y.example>",
        "J. Doe <jd@y.example>",
        "jo+tag@y.example",
        "Name<n@y.example>",
        "o'brien@y.example",
        "first.last@sub.domain.example",
        "NAME@Y.EXAMPLE",
        "\"\" <empty@y.example>",
        "undisclosed-recipients:;",
        "x@y.example (Comment)",
        "=?utf-8?q?J=C3=B6rg?= <j@y.example>",
        "not-an-address",
        "a@",
        "@b.example",
        "\"a\\\"b\" <e@y.example>",
        "a@b@c.example",
        "user@[127.0.0.1]",
        "\u{c4}sa <u@y.example>",
        "Team: a@b.example, c@d.example;",
        "a..b@y.example",
        "<a@y.example> Trailing",
        "Name <a@y.example",
        "",
    ],
    12,
);

const IDS: Pool = (
    &[
        "<abc123@host.example>",
        "<a.b+c@x.example>",
        "<CA1f2e3d4c5b6a7980@mail.gmail.com>",
        "<\"q\"@x.example>",
        "<id@x.example> (comment)",
        "id@x.example",
        "<>",
        "<a b@x.example>",
        "<id@x.example",
        "<<id@x.example>>",
        "",
    ],
    4,
);

const DATES: Pool = (
    &[
        "Mon, 23 Nov 2026 10:00:00 +0000",
        "23 Nov 2026 10:00:00 -0500",
        "Tue, 1 Dec 2026 09:05 +0130",
        "Mon, 23 Nov 2026 10:00:00 +0000 (UTC)",
        "Mon, 23 Nov 2026 10:00:00 +0000 (Coordinated Universal Time)",
        "Mon, 23 Nov 2026 10:00:00 GMT",
        "Mon, 23 Nov 26 10:00:00 +0000",
        "Mon, 31 Feb 2026 10:00:00 +0000",
        "Mon, 23 Nov 2026 25:00:00 +0000",
        "Mon, 23 Nov 2026 10:00:60 +0000",
        "Mon, 23 nov 2026 10:00:00 +0000",
        "Mon,23 Nov 2026 10:00:00 +0000",
        "Thu, 01 Jan 1970 00:00:00 +0000",
        "Wed, 31 Dec 1969 23:00:00 -0200",
        "  Fri, 4 Dec 2026 13:30:00 +0000  ",
        "Fri, 4 Dec 2026 13:30:00 +2400",
        "Fri, 4 Dec 2026 13:30:00 +0060",
        "Fri, 04 Dec 2026 13:30:00 +0000\r\n (UTC)",
        "Fri, 4 Dec 2026\r\n 13:30:00 +0000",
        "Sat, 1 Jan 1900 00:00:00 +0000",
        "Fri, 32 Dec 2026 13:30:00 +0000",
        "2026-12-04T13:30:00Z",
        "garbage",
        "",
    ],
    5,
);

const SUBJECTS: Pool = (
    &[
        "Hello",
        "  spaced   words  ",
        "Re: folded\r\n continuation",
        "tab\there",
        "x=y?z",
        "Proposal: Q3 pricing (draft)",
        "Fwd: <not an id> \"quoted\"",
        "a\r\n \r\n b",
        "",
        "   ",
        "=?utf-8?b?SGk=?=",
        "\u{dc}n\u{ef}code",
    ],
    8,
);

const LISTS: Pool = (
    &[
        "<news.vendor.example>",
        "Vendor News <news.vendor.example>",
        "<mailto:u@x.example>, <https://x.example/u?a=1>",
        "<mailto:u@x.example>,<https://x.example/u>",
        "<mailto:u@x.example>,\r\n <https://x.example/u>",
        "\"Vendor\" <news.vendor.example>",
        "news.vendor.example",
        "<>",
        "(c) <a.b>",
        "",
    ],
    5,
);

const CONTENT_TYPES: Pool = (
    &[
        "text/plain; charset=utf-8",
        "text/plain; charset=\"utf-8\"",
        "multipart/alternative; boundary=\"b1\"",
        "multipart/mixed;\r\n boundary=abc",
        "text/html",
        "TEXT/PLAIN",
        "text/plain; format=flowed; delsp=yes;",
        "multipart/report; report-type=delivery-status; boundary=x",
        "multipart/report; report-type=\"delivery-status\"",
        "text",
        "text/plain; name*=utf-8''x",
        "garbage;;",
        "multipart/mixed; boundary=\"a;b\"",
        "",
    ],
    7,
);

const AUTOMATED: Pool = (
    &[
        "auto-replied",
        "no",
        " Auto-Generated ",
        "bulk",
        "list",
        "yes",
        "OOF, AutoReply",
        "All",
        "",
    ],
    8,
);

const FAILED: Pool = (
    &[
        "a@b.example",
        "a@b.example, c@d.example",
        "a@b.example,\r\n c@d.example",
        "junk",
        "",
    ],
    3,
);

const OTHERS: &[&str] = &[
    "MIME-Version: 1.0",
    "X-Mailer: Foo 1.0",
    "Received: from x by y; Mon, 23 Nov 2026 10:00:00 +0000",
    "Reply-To: r@y.example",
    "X-Empty:",
];

/// One field, its name in a random case.
fn field(rng: &mut Rng, name: &str, value: &str) -> String {
    let name = match rng.below(4) {
        0 => name.to_ascii_lowercase(),
        1 => name.to_ascii_uppercase(),
        _ => name.to_owned(),
    };
    let sep = if rng.chance(5) { ":" } else { ": " };
    format!("{name}{sep}{value}\r\n")
}

fn address_list(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    let mut out = String::new();
    for i in 0..n {
        if i > 0 {
            out.push_str(rng.pick(&[", ", ",", ",\r\n ", " , ", ",\r\n\t"]));
        }
        out.push_str(rng.mostly(ADDRESSES));
    }
    out
}

fn id_list(rng: &mut Rng) -> String {
    let n = 1 + rng.below(4);
    let mut out = String::new();
    for i in 0..n {
        if i > 0 {
            out.push_str(rng.pick(&[" ", "\r\n ", "", "\r\n\t"]));
        }
        // Mostly well-formed ids, so that long lists are often plain.
        out.push_str(rng.mostly(IDS));
    }
    out
}

/// A header block: a random choice of the fields Rapport fetches, in a random order, and now
/// and then something outside the plain shape.
fn block(rng: &mut Rng) -> Vec<u8> {
    let mut fields = Vec::new();
    let mut add = |rng: &mut Rng, percent, name: &str, value: String| {
        if rng.chance(percent) {
            let f = field(rng, name, &value);
            fields.push(f);
        }
    };
    let v = rng.mostly(IDS).to_owned();
    add(rng, 90, "Message-ID", v);
    let v = if rng.chance(80) {
        rng.mostly(ADDRESSES).to_owned()
    } else {
        address_list(rng)
    };
    add(rng, 95, "From", v);
    for (name, percent) in [("To", 90), ("Cc", 30), ("Bcc", 5)] {
        let v = address_list(rng);
        add(rng, percent, name, v);
    }
    for name in ["In-Reply-To", "References"] {
        let v = id_list(rng);
        add(rng, 30, name, v);
    }
    // The rest from their pools: name, how often it is there, its values.
    let pooled = [
        ("Date", 90, DATES),
        ("Subject", 90, SUBJECTS),
        ("Auto-Submitted", 10, AUTOMATED),
        ("Precedence", 10, AUTOMATED),
        ("List-Id", 20, LISTS),
        ("List-Unsubscribe", 20, LISTS),
        ("Content-Type", 60, CONTENT_TYPES),
        ("X-Autoreply", 5, AUTOMATED),
        ("X-Autorespond", 5, AUTOMATED),
        ("X-Auto-Response-Suppress", 5, AUTOMATED),
        ("X-Failed-Recipients", 5, FAILED),
    ];
    for (name, percent, pool) in pooled {
        let v = rng.mostly(pool).to_owned();
        add(rng, percent, name, v);
    }
    if rng.chance(30) {
        fields.push(format!("{}\r\n", rng.pick(OTHERS)));
    }
    if rng.chance(3) && !fields.is_empty() {
        let again = fields[rng.below(fields.len())].clone();
        fields.push(again);
    }
    for i in (1..fields.len()).rev() {
        fields.swap(i, rng.below(i + 1));
    }
    let mut out = fields.concat();
    out.push_str("\r\n");
    match rng.below(100) {
        0 => out = out.replace("\r\n", "\n"),
        1 => out.push_str("A body.\r\n"),
        2 => out.truncate(out.len() - 2),
        3 => out.insert_str(0, " continued\r\n"),
        4 => out.insert_str(0, "No colon here\r\n"),
        5 => out.insert_str(0, "Sub ject: spaced name\r\n"),
        _ => {}
    }
    let mut out = out.into_bytes();
    if rng.chance(2) && !out.is_empty() {
        let at = rng.below(out.len());
        out[at] = 0xe9;
    }
    out
}

#[test]
fn wherever_it_answers_it_answers_as_mail_parser() {
    let mut rng = Rng(7);
    let total = 30_000;
    let mut answered = 0;
    for _ in 0..total {
        let raw = block(&mut rng);
        if let Some(fast) = parse(&raw) {
            answered += 1;
            let slow = parse_any(&raw);
            assert_eq!(Some(&fast), slow.as_ref(), "{}", String::from_utf8_lossy(&raw));
        }
    }
    // Most blocks have something outside the plain shape somewhere (see `Rng::mostly`); the
    // rest must be read here, or this reader saves nothing.
    assert!(answered > total / 4, "only {answered} of {total} blocks read");
}

#[test]
fn reads_the_usual_shapes_itself() {
    let blocks: &[&str] = &[
        // Gmail-like.
        "Message-ID: <CAF=x@mail.gmail.com>\r\nFrom: \"Pat Lead\" <pat@acme.example>\r\n\
         To: Alice Rep <alice@example.com>\r\nDate: Fri, 4 Dec 2026 13:30:00 +0000\r\n\
         Subject: Re: Proposal\r\nIn-Reply-To: <a1@example.com>\r\n\
         References: <a0@example.com>\r\n <a1@example.com>\r\n\
         Content-Type: multipart/alternative; boundary=\"000000000000abcdef\"\r\n\r\n",
        // Outlook-like, folded recipients, a time zone comment.
        "From: Lead One <lead1@company.example>\r\nTo: \"Rep, Alice\" <alice@example.com>,\r\n\
         \t\"Rep, Bob\" <bob@example.com>\r\nCc: carol@company.example\r\n\
         Subject: Meeting next week\r\nDate: Thu, 3 Dec 2026 09:15:02 -0800 (PST)\r\n\
         Message-ID: <BY5PR.123@namprd.prod.outlook.com>\r\n\
         Content-Type: text/plain; charset=\"us-ascii\"\r\n\r\n",
        // A newsletter.
        "Message-ID: <n1@vendor.example>\r\nFrom: news@vendor.example\r\nTo: alice@example.com\r\n\
         Subject: Our news\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         List-Id: Vendor News <news.vendor.example>\r\n\
         List-Unsubscribe: <mailto:unsub@vendor.example>, <https://vendor.example/u?x=1>\r\n\
         Precedence: bulk\r\n\r\n",
        // An out-of-office reply.
        "Message-ID: <oof@company.example>\r\nFrom: lead2@company.example\r\nTo: alice@example.com\r\n\
         Subject: Automatic reply: Proposal\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n\
         Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n\r\n",
    ];
    for b in blocks {
        let fast = parse(b.as_bytes()).unwrap_or_else(|| panic!("not read:\n{b}"));
        assert_eq!(Some(&fast), parse_any(b.as_bytes()).as_ref(), "{b}");
        assert!(
            fast.message_id.is_some() && !fast.from.is_empty() && fast.date.is_some(),
            "{fast:?}"
        );
    }
    let outlook = parse(blocks[1].as_bytes()).unwrap_or_default();
    assert_eq!(outlook.to, ["alice@example.com", "bob@example.com"]);
    assert_eq!(
        outlook.date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2026-12-03T17:15:02+00:00")
    );
    let news = parse(blocks[2].as_bytes()).unwrap_or_default();
    assert!(news.has_list_id && news.has_list_unsubscribe && news.precedence.as_deref() == Some("bulk"));
    let oof = parse(blocks[3].as_bytes()).unwrap_or_default();
    assert!(oof.vendor_auto_reply && oof.auto_submitted.as_deref() == Some("auto-replied"));
}

#[test]
fn leaves_everything_else_to_mail_parser() {
    let plain = "Message-ID: <a@b.example>\r\nFrom: x@y.example\r\nSubject: Hi\r\n";
    assert!(parse(format!("{plain}\r\n").as_bytes()).is_some());
    let others = [
        // A body after the header block (a whole message, as from Maildir).
        format!("{plain}\r\nBody\r\n"),
        // No empty line at the end, bare LF line ends.
        plain.to_owned(),
        format!("{plain}\r\n").replace("\r\n", "\n"),
        // An encoded word, a comment, a group, an 8-bit byte, a field twice.
        format!("{plain}To: =?utf-8?q?J=C3=B6rg?= <j@y.example>\r\n\r\n"),
        format!("{plain}To: j@y.example (Jorg)\r\n\r\n"),
        format!("{plain}To: Team: j@y.example;\r\n\r\n"),
        format!("{plain}To: J\u{f6}rg <j@y.example>\r\n\r\n"),
        format!("{plain}From: z@y.example\r\n\r\n"),
        // A delivery report, a date in an obsolete form.
        format!("{plain}Content-Type: multipart/report; report-type=delivery-status\r\n\r\n"),
        format!("{plain}Date: 4 Dec 26 13:30 EST\r\n\r\n"),
    ];
    for raw in &others {
        assert!(parse(raw.as_bytes()).is_none(), "read:\n{raw}");
    }
}

#[test]
fn dates_count_the_seconds_as_mail_parser_does() {
    let mut rng = Rng(11);
    for _ in 0..20_000 {
        let text = format!(
            "{}, {} {} {} {:02}:{:02}:{:02} {}{:02}{:02}",
            rng.pick(&["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
            1 + rng.below(31),
            std::str::from_utf8(MONTHS[rng.below(12)]).unwrap_or_default(),
            1900 + rng.below(1101),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.pick(&["+", "-"]),
            rng.below(24),
            rng.below(60),
        );
        let theirs = mail_parser::DateTime::parse_rfc822(&text).map(|d| d.to_timestamp());
        assert_eq!(date(text.as_bytes()), theirs, "{text}");
    }
}

#[test]
fn the_byte_table_holds_the_character_sets() {
    for b in 0..=255u8 {
        let plain = b == b'\t' || (b' '..=b'~').contains(&b) && b != b'=';
        assert_eq!(CLASS[b as usize] & PLAIN != 0, plain, "{b:#x}");
        let atext = b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
        assert_eq!(is_atext(b), atext, "{b:#x}");
        let token = b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=*".contains(&b);
        assert_eq!(CLASS[b as usize] & TOKEN != 0, token, "{b:#x}");
    }
}
