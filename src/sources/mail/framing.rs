//! Read-ahead for the IMAP connection that hands the protocol parser whole responses.
//!
//! async-imap reads into a buffer of its own and, after every response it decodes, moves what
//! follows that response into a freshly allocated, zeroed block (the decoded response keeps the
//! old one). Given a socket read of many responses it therefore copies the rest of the read
//! once per response, and each read that ends inside a response costs a parse attempt that
//! fails for want of data. A FETCH of a thousand messages is a thousand responses. Here the
//! socket is read in large chunks, and each read of the parser gets as many whole responses as
//! its free space holds (async-imap offers 4 KiB or so; a FETCH response for one message's
//! header fields is a few hundred bytes): every parse succeeds on the first try, and what is
//! moved after each is at most a few responses, never the rest of a large read.
//!
//! Where a response ends is found from the wire format alone (RFC 3501 §4.3, §7.5): a line
//! ends with CRLF, unless it ends with a literal's announcement `{n}` (or `~{n}` for a binary
//! literal, RFC 3516), in which case n bytes of data follow and then the line goes on. Status
//! responses, completions and continuation requests end in free text and never announce one.
//! For async-imap the boundary is only a hint: it decodes the same stream whatever the pieces,
//! and bytes are never held back while the socket has nothing more to give, so a misjudged
//! boundary would cost speed, never data or a stall. Rapport's own reader of FETCH and SEARCH
//! answers (`imap::run_command`) takes whole responses as found here: for a server that follows
//! the grammar they are exact.

use std::collections::VecDeque;

/// Buffered bytes read from the socket and not yet handed to the parser.
#[derive(Debug)]
pub(super) struct ResponseBuffer {
    buf: Vec<u8>,
    /// Bytes before `start` were handed over; bytes from `end` on are free.
    start: usize,
    end: usize,
    /// Where the search for the end of the next response resumes: the start of a line not yet
    /// complete (maybe handed over in part already), past every literal announced (past `end`
    /// while the rest of one is still to come).
    scan: usize,
    /// Ends of the responses found and not yet handed over in full, in order (all past
    /// `start`, none past `scan`), and whether each is a command's tagged completion.
    ends: VecDeque<(usize, bool)>,
    /// Whether the response being looked through is tagged, once its first line was seen.
    tagged: Option<bool>,
    /// The last hand-over ended inside a response.
    partial: bool,
}

/// Size of the read-ahead buffer, and of the largest socket read (the buffer grows only while a
/// response of about that size or more is being read: the parser needs all of it at once).
const CHUNK: usize = 16 * 1024;

impl ResponseBuffer {
    pub(super) fn new() -> Self {
        ResponseBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scan: 0,
            ends: VecDeque::new(),
            tagged: None,
            partial: false,
        }
    }

    /// Whether bytes are waiting to be handed over.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Room for the next socket read, after moving what is left to the front when that frees
    /// space. Call [`ResponseBuffer::filled`] with the number of bytes read into it.
    pub(super) fn spare(&mut self) -> &mut [u8] {
        // Bytes before `start` were handed over; those from `scan` on are kept until their line
        // is complete (a response handed over in part is still being looked through).
        let keep = self.scan.min(self.start);
        let low = self.buf.len() - self.end < CHUNK / 4;
        if keep > 0 && (keep == self.end || low) {
            self.buf.copy_within(keep..self.end, 0);
            self.start -= keep;
            self.end -= keep;
            self.scan -= keep;
            self.ends.iter_mut().for_each(|(e, _)| *e -= keep);
        }
        if self.buf.len() - self.end < CHUNK / 4 {
            // Only a response longer than what is free (a large literal) grows the buffer; the
            // parser needs all of that response anyway.
            self.buf.resize(self.end + CHUNK, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`ResponseBuffer::spare`].
    pub(super) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Hands over up to `limit` bytes: the whole responses buffered that fit, up to the next
    /// tagged completion, else (a response longer than `limit`) the first `limit` bytes of the
    /// first one when all of it is buffered, else, with `partial`, whatever is buffered. `None`
    /// when there is nothing to hand over on those terms.
    ///
    /// Nothing after a tagged completion goes with it, so a parser that has just read one holds
    /// nothing more: the connection can then be read directly (see [`Self::take_response`]).
    pub(super) fn take(&mut self, limit: usize, partial: bool) -> Option<&[u8]> {
        let from = self.start;
        while self.ends.back().is_none_or(|&(e, tagged)| e - from <= limit && !tagged) {
            match self.response_end() {
                Some(end) => self.ends.push_back(end),
                None => break,
            }
        }
        let mut stop = None;
        while let Some(&(end, tagged)) = self.ends.front()
            && end - from <= limit
        {
            stop = Some(end);
            self.ends.pop_front();
            if tagged {
                break;
            }
        }
        let (stop, inside) = match stop {
            Some(end) => (end, false),
            None if !self.ends.is_empty() || partial => (self.end.min(from.saturating_add(limit)), true),
            None => return None,
        };
        if stop == from {
            return None;
        }
        self.start = stop;
        self.partial = inside;
        Some(&self.buf[from..stop])
    }

    /// Whether a whole response is buffered and not yet handed over in any part.
    pub(super) fn has_response(&mut self) -> bool {
        if self.ends.is_empty()
            && let Some(end) = self.response_end()
        {
            self.ends.push_back(end);
        }
        self.ends.front().is_some_and(|&(end, _)| end > self.start)
    }

    /// Whether the next byte to hand over starts a response (no response was handed over in
    /// part): where [`Self::take_response`] may be called.
    pub(super) fn at_response_start(&self) -> bool {
        !self.partial
    }

    /// Hands over the next response whole, if all of it is buffered: for a reader of responses
    /// of its own, where [`Self::take`] feeds a parser that buffers. Call it at a response's
    /// start (see [`Self::at_response_start`]), as after a tagged completion.
    pub(super) fn take_response(&mut self) -> Option<&[u8]> {
        if !self.has_response() {
            return None;
        }
        let (end, _) = self.ends.pop_front()?;
        let from = self.start;
        self.start = end;
        Some(&self.buf[from..end])
    }

    /// Where the next response not yet found ends, if all of it is buffered, and whether it is
    /// tagged (a command's completion, not `*` or `+`).
    fn response_end(&mut self) -> Option<(usize, bool)> {
        loop {
            // Past `end` while the rest of a literal is still to come.
            let line = self.buf.get(self.scan..self.end)?;
            let newline = memchr::memchr(b'\n', line)?;
            let line_end = self.scan + newline + 1;
            let literal = match self.tagged {
                // The first line of the response: what kind it is decides whether it may
                // announce a literal. A tagged completion, a continuation request and a status
                // response (`* OK`, `* NO`, `* BAD`, `* BYE`, `* PREAUTH`) end with human-readable
                // text, never a literal, whatever the text ends with (RFC 3501 §7.1).
                None => {
                    let first = &line[..newline];
                    let tagged = !matches!(first.first(), Some(b'*' | b'+' | b'\r') | None);
                    self.tagged = Some(tagged);
                    literal_length(first).filter(|_| !tagged && first.starts_with(b"* ") && !is_status(&first[2..]))
                }
                Some(_) => literal_length(&line[..newline]),
            };
            match literal {
                Some(n) => {
                    // The literal's bytes need no looking at (nor keeping, once handed over).
                    self.scan = line_end + n;
                }
                None => {
                    self.scan = line_end;
                    return Some((line_end, self.tagged.take().unwrap_or(false)));
                }
            }
        }
    }
}

/// Whether an untagged response (after `* `) is a status response, whose text may end in
/// anything.
fn is_status(rest: &[u8]) -> bool {
    let word = rest.split(|&b| b == b' ' || b == b'\r').next().unwrap_or_default();
    ["OK", "NO", "BAD", "BYE", "PREAUTH"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s.as_bytes()))
}

/// The length a line announces for the literal that follows it: the line (without its LF)
/// ends with `{n}` (or `~{n}`), maybe followed by CR.
fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // A literal's length is a 32-bit number (RFC 3501 §9, `number`).
    let n: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    usize::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in reads of the given sizes (then as large as the buffer allows) and takes
    /// with `limit`, partial data after every read with `eager` (the socket had nothing more
    /// each time), else only after the last; `after_read` sees the buffer after each read's
    /// takes. Returns what was handed over, piece by piece.
    fn feed(
        input: &[u8],
        reads: &[usize],
        limit: usize,
        eager: bool,
        mut after_read: impl FnMut(&ResponseBuffer),
    ) -> Vec<Vec<u8>> {
        let mut b = ResponseBuffer::new();
        let mut out = Vec::new();
        let mut pos = 0;
        for &size in reads.iter().chain(std::iter::repeat(&usize::MAX)) {
            if pos >= input.len() {
                break;
            }
            let spare = b.spare();
            let n = size.min(spare.len()).min(input.len() - pos);
            spare[..n].copy_from_slice(&input[pos..pos + n]);
            b.filled(n);
            pos += n;
            while let Some(piece) = b.take(limit, eager) {
                out.push(piece.to_vec());
            }
            after_read(&b);
        }
        while let Some(piece) = b.take(limit, true) {
            out.push(piece.to_vec());
        }
        out
    }

    fn run_with(input: &[u8], reads: &[usize], limit: usize, eager: bool) -> Vec<Vec<u8>> {
        feed(input, reads, limit, eager, |_| {})
    }

    /// A FETCH response whose body is a literal of `len` bytes, and the command's completion.
    fn literal_fetch(len: usize) -> Vec<u8> {
        let mut input = format!("* 1 FETCH (BODY[] {{{len}}}\r\n").into_bytes();
        input.resize(input.len() + len, b'x');
        input.extend_from_slice(b")\r\nA1 OK\r\n");
        input
    }

    fn run(input: &[u8], reads: &[usize], limit: usize) -> Vec<Vec<u8>> {
        run_with(input, reads, limit, false)
    }

    const FETCHES: &[u8] = b"* 1 FETCH (UID 7 BODY[HEADER.FIELDS (FROM)] {15}\r\nFrom: a@b.c\r\n\r\n)\r\n\
        * 2 FETCH (UID 8 FLAGS (\\Seen))\r\n\
        * 3 FETCH (UID 9 BODY[] ~{5}\r\n{3}\r\n BODY[1] {0}\r\n)\r\n\
        A1 OK done\r\n";

    /// The responses of [`FETCHES`], one by one.
    const RESPONSES: [&[u8]; 4] = [
        b"* 1 FETCH (UID 7 BODY[HEADER.FIELDS (FROM)] {15}\r\nFrom: a@b.c\r\n\r\n)\r\n",
        b"* 2 FETCH (UID 8 FLAGS (\\Seen))\r\n",
        b"* 3 FETCH (UID 9 BODY[] ~{5}\r\n{3}\r\n BODY[1] {0}\r\n)\r\n",
        b"A1 OK done\r\n",
    ];

    /// Where each piece ends, counted from the start of the stream.
    fn piece_ends(pieces: &[Vec<u8>]) -> Vec<usize> {
        pieces
            .iter()
            .scan(0, |at, p| {
                *at += p.len();
                Some(*at)
            })
            .collect()
    }

    #[test]
    fn pieces_end_where_responses_end_whatever_the_reads() {
        assert_eq!(RESPONSES.concat(), FETCHES);
        let boundaries = piece_ends(&RESPONSES.map(<[u8]>::to_vec));
        for reads in [vec![1], vec![3, 50, 2, 7], vec![13], vec![FETCHES.len()]] {
            let got = run(FETCHES, &reads, usize::MAX);
            assert_eq!(got.concat(), FETCHES, "reads of {reads:?}");
            for end in piece_ends(&got) {
                assert!(boundaries.contains(&end), "reads of {reads:?}: a piece ends at {end}");
            }
        }
        // Byte by byte, each response is handed over the moment it is complete.
        assert_eq!(run(FETCHES, &[1; 200], usize::MAX), RESPONSES.map(<[u8]>::to_vec));
        // All at once, all in one piece.
        assert_eq!(run(FETCHES, &[FETCHES.len()], usize::MAX), [FETCHES.to_vec()]);
    }

    #[test]
    fn as_many_whole_responses_as_fit() {
        let limit = RESPONSES[0].len() + RESPONSES[1].len() + 1;
        let got = run(FETCHES, &[FETCHES.len()], limit);
        assert_eq!(got, [RESPONSES[..2].concat(), RESPONSES[2..].concat()]);
        // A response longer than what fits is cut where it must be; the parser waits for the rest.
        let got = run(FETCHES, &[FETCHES.len()], 10);
        assert_eq!(got[0], &FETCHES[..10]);
        assert_eq!(got.concat(), FETCHES);
    }

    #[test]
    fn nothing_after_a_tagged_completion_goes_with_it() {
        let input = b"* 1 EXISTS\r\nA1 OK done\r\n* 2 EXISTS\r\nF1 OK done\r\n+ go on\r\n";
        let got = run(input, &[input.len()], usize::MAX);
        assert_eq!(
            got,
            [
                b"* 1 EXISTS\r\nA1 OK done\r\n".to_vec(),
                b"* 2 EXISTS\r\nF1 OK done\r\n".to_vec(),
                b"+ go on\r\n".to_vec()
            ]
        );
    }

    #[test]
    fn responses_taken_one_by_one() {
        let mut b = ResponseBuffer::new();
        let mut got = Vec::new();
        for piece in FETCHES.chunks(7) {
            b.spare()[..piece.len()].copy_from_slice(piece);
            b.filled(piece.len());
            while let Some(r) = b.take_response() {
                got.push(r.to_vec());
            }
        }
        assert_eq!(got, RESPONSES.map(<[u8]>::to_vec));
        assert!(b.is_empty());
        assert!(!b.has_response());
    }

    #[test]
    fn never_loses_or_reorders_bytes() {
        // Small limits cut responses; odd read sizes cut lines and literal announcements.
        for limit in [1, 5, 64, usize::MAX] {
            for read in [1, 2, 7, 100] {
                for eager in [false, true] {
                    let got = run_with(FETCHES, &[read; 200], limit, eager).concat();
                    assert_eq!(got, FETCHES, "limit {limit}, reads of {read}, eager {eager}");
                }
            }
        }
    }

    #[test]
    fn a_response_handed_over_in_part_ends_where_it_ends() {
        // The socket paused inside the announcement of a literal and inside the literal: what
        // was there went to the parser, and the piece that completes the response ends with it.
        let first = RESPONSES[0].len();
        let got = run_with(FETCHES, &[40, 5, 20, first - 65], usize::MAX, true);
        assert_eq!(piece_ends(&got)[..4], [40, 45, 65, first]);
        assert_eq!(got.concat(), FETCHES);
    }

    #[test]
    fn an_unfinished_response_is_handed_over_only_when_asked_for() {
        let mut b = ResponseBuffer::new();
        let text = b"* 1 FETCH (BODY[] {10}\r\nabc";
        b.spare()[..text.len()].copy_from_slice(text);
        b.filled(text.len());
        assert_eq!(b.take(usize::MAX, false), None, "the literal is not all here");
        assert_eq!(b.take(usize::MAX, true), Some(&text[..]));
        assert!(b.is_empty());
        assert_eq!(b.take(usize::MAX, true), None);
    }

    #[test]
    fn status_text_that_looks_like_a_literal_is_text() {
        // Status responses, completions and continuation requests end in human-readable text:
        // a "{2}" at its end announces nothing.
        let text = b"* OK note {2}\r\n* 1 EXISTS\r\nA1 OK done {4}\r\n+ more {1}\r\n* BYE {3}\r\n\r\n";
        let got = run(text, &[1; 200], usize::MAX);
        assert_eq!(
            got,
            [
                &b"* OK note {2}\r\n"[..],
                b"* 1 EXISTS\r\n",
                b"A1 OK done {4}\r\n",
                b"+ more {1}\r\n",
                b"* BYE {3}\r\n",
                b"\r\n"
            ]
        );
        // Data responses do announce literals, on their first line too.
        let text = b"* LIST () \"/\" {3}\r\nA B\r\n* 1 FETCH (BODY[] {2}\r\n{})\r\n";
        let got = run(text, &[1; 200], usize::MAX);
        assert_eq!(
            got,
            [
                &b"* LIST () \"/\" {3}\r\nA B\r\n"[..],
                b"* 1 FETCH (BODY[] {2}\r\n{})\r\n"
            ]
        );
    }

    #[test]
    fn an_empty_line_is_not_a_completion() {
        let text = b"\r\n* 1 EXISTS\r\n";
        let got = run(text, &[text.len()], usize::MAX);
        assert_eq!(
            got,
            [text.to_vec()],
            "handed over together: the empty line is not tagged"
        );
    }

    #[test]
    fn a_response_handed_over_in_part_is_not_at_a_start() {
        let mut b = ResponseBuffer::new();
        let text = b"* 1 FETCH (BODY[] {10}\r\nabc";
        b.spare()[..text.len()].copy_from_slice(text);
        b.filled(text.len());
        assert!(b.at_response_start());
        assert!(b.take(usize::MAX, true).is_some());
        assert!(!b.at_response_start());
        let rest = b"defghij)\r\n";
        b.spare()[..rest.len()].copy_from_slice(rest);
        b.filled(rest.len());
        assert_eq!(b.take(usize::MAX, false), Some(&rest[..]));
        assert!(b.at_response_start());
    }

    #[test]
    fn a_long_stream_of_small_responses_keeps_the_buffer_small() {
        let response = b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (FROM)] {15}\r\nFrom: a@b.c\r\n\r\n)\r\n";
        let input = response.repeat(20_000);
        // Reads that end inside a response, as a busy socket gives them.
        let mut largest = 0;
        let got = feed(&input, &[1000; 20_000], usize::MAX, false, |b| {
            largest = largest.max(b.buf.len())
        });
        let mut out = 0;
        for piece in got {
            let whole = piece.len() / response.len();
            assert_eq!(piece, response.repeat(whole), "whole responses only");
            out += whole;
        }
        assert_eq!(out, 20_000);
        assert!(largest <= CHUNK * 5 / 4, "the buffer grew to {largest} bytes");
    }

    #[test]
    fn a_literal_streamed_in_pieces_is_not_kept_once_handed_over() {
        // A large body arrives over many socket reads, each handed over as it comes (the socket
        // had nothing more each time): the buffer keeps none of it, and the response still ends
        // where it ends.
        let input = literal_fetch(40 * CHUNK);
        let mut largest = 0;
        let got = feed(&input, &[1000; 1000], 4096, true, |b| {
            largest = largest.max(b.buf.len())
        });
        assert_eq!(got.concat(), input);
        assert!(largest <= 2 * CHUNK, "the buffer grew to {largest} bytes");
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {123}\r"), Some(123));
        assert_eq!(literal_length(b"x ~{0}"), Some(0));
        assert_eq!(literal_length(b"* OK done\r"), None);
        assert_eq!(literal_length(b"{}\r"), None);
        assert_eq!(literal_length(b"{12a}\r"), None);
        assert_eq!(literal_length(b"{4294967295}\r"), Some(4_294_967_295));
        assert_eq!(
            literal_length(b"{4294967296}\r"),
            None,
            "beyond 32 bits is not a literal"
        );
    }

    #[test]
    fn a_large_literal_grows_the_buffer_and_stays_whole() {
        let input = literal_fetch(3 * CHUNK);
        let got = run(&input, &[CHUNK / 3; 20], usize::MAX);
        assert_eq!(got.concat(), input);
        assert!(got[0].len() >= 3 * CHUNK, "the literal is handed over whole");
    }
}
