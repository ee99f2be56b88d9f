//! IMAP mailboxes (async-imap on tokio): TLS, STARTTLS or plain; password or XOAUTH2; the sent
//! folder and INBOX (or Gmail's `\All`); incremental by UID with a per-folder cursor; IDLE on
//! the watched folder with polling as fallback.
//!
//! Only header fields are fetched (`BODY.PEEK[HEADER.FIELDS (…)]`, which also leaves `\Seen`
//! alone); the whole message is fetched only for the few whose header fields may be a bounce's.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_imap::extensions::idle::IdleResponse;
use async_imap::types::NameAttribute;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use super::fetch::{Fetched, MessageItems};
use super::framing::ResponseBuffer;
use super::headers::FETCHED_FIELDS;
use super::{FetchedMail, IngestStats, Ingestor, MailHeaders};
use crate::config::{ImapAuth, ImapConfig, TlsMode};
use crate::oauth::{OAuthError, TokenSource};
use crate::sources::SourceError;
use crate::store::SyncCursor;

/// Messages per FETCH, and per transaction unless more are waiting (see [`MESSAGES_PER_TX`]).
pub const BATCH: usize = 1000;

/// At most this many messages per transaction during a backfill: a batch that is already
/// waiting when the one before it is stored goes into the same transaction. Each commit writes
/// every page it changed to the log (and a checkpoint copies it again); with real, random
/// Message-IDs a batch changes pages all over two indexes, so fewer commits write far less.
/// Mail arriving one message at a time finds nothing waiting and commits at once.
const MESSAGES_PER_TX: usize = 10 * BATCH;
/// UIDs per `UID SEARCH … SINCE` of a backfill. Dovecot reads every message's date before it
/// answers such a search, and nothing can be fetched meanwhile: searched whole, the benchmark's
/// folder of 50,000 messages kept Rapport waiting for a tenth of the time the fetching took.
/// Searched a slice of UIDs at a time, only the first slice is waited for; each next one is
/// searched while the batches found before it are parsed and stored. Small slices cost little
/// more: a search of a few thousand messages is one round trip on a connection that is busy
/// anyway, and slices are searched until a whole batch is found. Past a slice that found a
/// batch or more and held only messages inside the window, the rest is fetched in ranges without
/// a search ([`Chunk::Range`]).
const SEARCH_SLICE: u32 = 2 * BATCH as u32;
/// Longest wait for any single network step.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// IDLE must be re-issued before the 29-minute limit of RFC 2177.
const MAX_IDLE: Duration = Duration::from_secs(25 * 60);

/// The connection under the IMAP session: plain TCP or TLS, read ahead in large chunks and
/// handed to async-imap in whole responses (see `framing`), and whether the server has closed
/// it.
///
/// async-imap ends a command's response stream quietly when the connection reaches end of file
/// before the tagged completion: a `UID SEARCH` then returns the UIDs read so far (often none) as
/// if the search had succeeded. The EOF is recorded here so that every command whose answer moves
/// a cursor can tell a complete answer from a cut-off one (see [`check_open`]).
pub struct Conn {
    stream: Stream,
    read_ahead: ResponseBuffer,
    /// The socket reached end of file (what was read before it may still be buffered).
    eof: bool,
    /// End of file was passed on to async-imap, or met by [`run_command`].
    closed: bool,
    /// Commands [`run_command`] sent, for their tags.
    commands: u32,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            read_ahead: ResponseBuffer::new(),
            eof: false,
            closed: false,
            commands: 0,
        }
    }

    /// The next whole response, read past async-imap (see [`run_command`]); `None` once the
    /// server has closed the connection.
    async fn response(&mut self) -> std::io::Result<Option<&[u8]>> {
        use tokio::io::AsyncReadExt;
        if !self.read_ahead.at_response_start() {
            // async-imap was handed part of a response and dropped before reading the rest
            // (a cancelled command): the connection is out of step and must be replaced.
            return Err(std::io::Error::other(
                "the IMAP connection is in the middle of a response",
            ));
        }
        loop {
            if self.read_ahead.has_response() {
                return Ok(self.read_ahead.take_response());
            }
            if self.eof {
                self.closed = true;
                return Ok(None);
            }
            let spare = self.read_ahead.spare();
            let n = match &mut self.stream {
                Stream::Plain(s) => s.read(spare).await?,
                Stream::Tls(s) => s.read(spare).await?,
            };
            if n == 0 {
                self.eof = true;
            } else {
                self.read_ahead.filled(n);
            }
        }
    }

    /// True once a read has hit end of file: the server closed the connection.
    pub fn closed(&self) -> bool {
        self.closed
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.stream {
            Stream::Plain(_) => "Conn::Plain",
            Stream::Tls(_) => "Conn::Tls",
        })
    }
}

impl AsyncRead for Conn {
    /// Hands over the whole responses buffered that fit; otherwise reads the socket, and
    /// when the socket has nothing more for now, hands over whatever is buffered (a boundary is
    /// only a hint: bytes never wait for one).
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(bytes) = this.read_ahead.take(buf.remaining(), this.eof) {
                buf.put_slice(bytes);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                this.closed = true;
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(this.read_ahead.spare());
            let res = match &mut this.stream {
                Stream::Plain(s) => Pin::new(s).poll_read(cx, &mut chunk),
                Stream::Tls(s) => Pin::new(s).poll_read(cx, &mut chunk),
            };
            let n = chunk.filled().len();
            match res {
                Poll::Ready(Ok(())) if n == 0 => this.eof = true,
                Poll::Ready(Ok(())) => this.read_ahead.filled(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => match this.read_ahead.take(buf.remaining(), true) {
                    Some(bytes) => {
                        buf.put_slice(bytes);
                        return Poll::Ready(Ok(()));
                    }
                    None => return Poll::Pending,
                },
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

pub type Session = async_imap::Session<Conn>;

/// Runs a network step with [`IO_TIMEOUT`]; its error becomes a transient one, with `what` as context.
async fn io<T, E: Into<anyhow::Error>>(what: &str, fut: impl Future<Output = Result<T, E>>) -> Result<T, SourceError> {
    io_timeout(what, async {
        fut.await
            .map_err(|e| SourceError::Transient(e.into().context(what.to_owned())))
    })
    .await
}

/// Fails when the server closed the connection while `what` ran: its answer may be cut short
/// (async-imap returns what it read before the end of file as a complete answer).
fn check_open(session: &Session, what: &str) -> Result<(), SourceError> {
    if session.get_ref().closed() {
        return Err(SourceError::Transient(anyhow!(
            "{what}: the server closed the connection before completing the command"
        )));
    }
    Ok(())
}

fn tls_connector(cfg: &ImapConfig) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("reading ca_file {}", ca.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(cert.with_context(|| format!("parsing {}", ca.display()))?)
                .with_context(|| format!("adding {} to the trusted roots", ca.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn tls_wrap(cfg: &ImapConfig, tcp: TcpStream) -> Result<Conn, SourceError> {
    let connector = tls_connector(cfg)?;
    let name = rustls::pki_types::ServerName::try_from(cfg.host.clone())
        .map_err(|e| SourceError::Transient(anyhow!("invalid host name {}: {e}", cfg.host)))?;
    let tls = io("TLS handshake", connector.connect(name, tcp)).await?;
    Ok(Conn::new(Stream::Tls(Box::new(tls))))
}

/// XOAUTH2 (Google, Microsoft): the first answer carries the token; after a failure the
/// server sends an error challenge, which is answered with an empty line.
struct XOAuth2 {
    user: String,
    token: String,
    sent: bool,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        if self.sent {
            return String::new();
        }
        self.sent = true;
        crate::oauth::xoauth2_string(&self.user, &self.token)
    }
}

/// Opens the connection (TCP, then TLS or STARTTLS as configured) and reads the greeting:
/// connected, not logged in.
pub async fn open(cfg: &ImapConfig) -> Result<async_imap::Client<Conn>, SourceError> {
    let tcp = io("connecting", TcpStream::connect((cfg.host.as_str(), cfg.port))).await?;
    let _ = tcp.set_nodelay(true);
    let conn = match cfg.tls {
        TlsMode::Implicit => tls_wrap(cfg, tcp).await?,
        TlsMode::None => Conn::new(Stream::Plain(tcp)),
        TlsMode::StartTls => {
            let mut client = async_imap::Client::new(Conn::new(Stream::Plain(tcp)));
            io("reading the greeting", client.read_response()).await?;
            io("STARTTLS", client.run_command_and_check_ok("STARTTLS", None)).await?;
            // Anything the server sent after its OK and before the handshake is dropped with the
            // plain connection's buffers: a man in the middle cannot make bytes it injected
            // before TLS look like answers that came over TLS.
            let Stream::Plain(tcp) = client.into_inner().stream else {
                unreachable!("the stream was created plain")
            };
            tls_wrap(cfg, tcp).await?
        }
    };
    let mut client = async_imap::Client::new(conn);
    if cfg.tls != TlsMode::StartTls {
        io("reading the greeting", client.read_response()).await?;
    }
    Ok(client)
}

/// Connects and logs in.
pub async fn connect(cfg: &ImapConfig) -> Result<Session, SourceError> {
    let client = open(cfg).await?;
    let result = match &cfg.auth {
        ImapAuth::Password(src) => {
            let password = src.read()?;
            tokio::time::timeout(IO_TIMEOUT, client.login(&cfg.username, password.expose())).await
        }
        ImapAuth::XOAuth2(src) => {
            let token = src.read()?;
            xoauth2_login(client, cfg, token.expose()).await
        }
        ImapAuth::OAuth2(oauth) => {
            let source = TokenSource::new(oauth, crate::clock::system())?;
            let token = source.access_token().await.map_err(oauth_error)?;
            match xoauth2_login(client, cfg, token.expose()).await {
                // Refused although fresh by our clock: revoked, or the clocks disagree. One
                // new token, on a new connection (the server may hang up after a failure).
                Ok(Err((async_imap::error::Error::No(msg), _))) => {
                    warn!(user = %cfg.username, "access token refused ({msg}); refreshing it");
                    let token = source.refreshed_token().await.map_err(oauth_error)?;
                    let client = open(cfg).await?;
                    xoauth2_login(client, cfg, token.expose()).await
                }
                other => other,
            }
        }
    };
    match result {
        Err(_) => Err(SourceError::Transient(anyhow!(
            "login: no answer within {IO_TIMEOUT:?}"
        ))),
        Ok(Ok(session)) => Ok(session),
        // A tagged NO to LOGIN/AUTHENTICATE is the server refusing the credentials.
        Ok(Err((async_imap::error::Error::No(msg), _))) => Err(SourceError::Auth(format!(
            "{} refused the login of {}: {msg}",
            cfg.host, cfg.username
        ))),
        Ok(Err((e, _))) => Err(SourceError::Transient(anyhow::Error::from(e).context("login"))),
    }
}

type LoginResult =
    Result<Result<Session, (async_imap::error::Error, async_imap::Client<Conn>)>, tokio::time::error::Elapsed>;

async fn xoauth2_login(client: async_imap::Client<Conn>, cfg: &ImapConfig, token: &str) -> LoginResult {
    let auth = XOAuth2 {
        user: cfg.username.clone(),
        token: token.to_owned(),
        sent: false,
    };
    tokio::time::timeout(IO_TIMEOUT, client.authenticate("XOAUTH2", auth)).await
}

fn oauth_error(e: OAuthError) -> SourceError {
    match e {
        OAuthError::NeedsAuthorization(msg) => SourceError::Auth(msg),
        OAuthError::Transient(e) => SourceError::Transient(e.context("getting an OAuth access token")),
    }
}

/// The folders to sync, sent folders first (replies are recognised by the outbound messages
/// they answer), and the folder to IDLE on.
pub async fn folders(session: &mut Session, cfg: &ImapConfig) -> Result<(Vec<String>, String), SourceError> {
    if !cfg.folders.is_empty() {
        let mut list = cfg.folders.clone();
        list.sort_by_key(|f| !f.to_lowercase().contains("sent"));
        let watch = list
            .iter()
            .find(|f| f.eq_ignore_ascii_case("INBOX"))
            .unwrap_or(&list[0])
            .clone();
        return Ok((list, watch));
    }
    let names: Vec<_> = io("LIST", async {
        session.list(Some(""), Some("*")).await?.try_collect::<Vec<_>>().await
    })
    .await?;
    check_open(session, "LIST")?;
    let with = |attr: &NameAttribute<'_>| {
        names
            .iter()
            .find(|n| n.attributes().iter().any(|a| a == attr))
            .map(|n| n.name().to_owned())
    };
    let sent = with(&NameAttribute::Sent);
    // Gmail keeps every message in `\All`, labelled into INBOX and Sent: syncing All and Sent
    // covers archived mail too; the natural key counts a message seen in both once.
    let main = with(&NameAttribute::All).unwrap_or_else(|| "INBOX".to_owned());
    let mut list = Vec::new();
    if let Some(s) = sent {
        list.push(s);
    }
    list.push(main.clone());
    Ok((list, main))
}

fn cursor_for(ingestor: &Ingestor, folder: &str, validity: u32, last_uid: u32, modseq: Option<u64>) -> SyncCursor {
    SyncCursor {
        source_id: ingestor.mailbox_id.clone(),
        scope: folder.to_owned(),
        validity: Some(i64::from(validity)),
        last_uid: Some(i64::from(last_uid)),
        highest_modseq: modseq.and_then(|m| i64::try_from(m).ok()),
        token: None,
    }
}

/// Compresses sorted UIDs into an IMAP sequence set (`1:3,7,9:10`).
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Syncs one folder from its cursor; returns what was ingested. When `stop` fires, returns
/// after storing the batches already read (each with its cursor): the rest is fetched at the
/// next start.
pub async fn sync_folder(
    session: &mut Session,
    cfg: &ImapConfig,
    ingestor: &Ingestor,
    folder: &str,
    stop: &CancellationToken,
) -> Result<IngestStats, SourceError> {
    // Plain SELECT, not SELECT (CONDSTORE): Rapport needs new UIDs (UIDNEXT tells whether
    // there are any), not flag changes, so it does not ask the server to track modification
    // sequences. HIGHESTMODSEQ is still recorded where the server reports it.
    let mailbox = match tokio::time::timeout(IO_TIMEOUT, session.select(folder)).await {
        Ok(Ok(m)) => m,
        Ok(Err(async_imap::error::Error::No(msg))) => {
            return Err(SourceError::MissingFolder(format!("{folder}: {msg}")));
        }
        Ok(Err(e)) => {
            return Err(SourceError::Transient(
                anyhow::Error::from(e).context(format!("SELECT {folder}")),
            ));
        }
        Err(_) => {
            return Err(SourceError::Transient(anyhow!(
                "SELECT {folder}: no answer within {IO_TIMEOUT:?}"
            )));
        }
    };
    check_open(session, "SELECT")?;
    let validity = mailbox.uid_validity.unwrap_or(0);
    let cursor = ingestor.store.cursor(&ingestor.mailbox_id, folder).await?;
    let known = cursor
        .as_ref()
        .filter(|c| c.validity == Some(i64::from(validity)))
        .and_then(|c| c.last_uid)
        .and_then(|u| u32::try_from(u).ok());
    if let Some(c) = &cursor
        && c.validity != Some(i64::from(validity))
    {
        warn!(mailbox = %ingestor.mailbox_id, %folder, old = ?c.validity, new = validity,
              "UIDVALIDITY changed: resyncing the folder (activities are not duplicated)");
    }
    let modseq = mailbox.highest_modseq;

    let uids = match known {
        Some(last) => {
            if mailbox.uid_next.is_some_and(|next| next <= last + 1) {
                return Ok(IngestStats::default());
            }
            let found = io_timeout("UID SEARCH", uid_search(session, &format!("UID {}:*", last + 1))).await?;
            // `n:*` includes the last message even when its UID is below n.
            UidSource::found(found.into_iter().filter(|u| *u > last).collect())
        }
        None => {
            let since = ingestor.store.now() - chrono::Duration::days(i64::from(cfg.backfill_days));
            match mailbox.uid_next {
                Some(next) => {
                    info!(mailbox = %ingestor.mailbox_id, %folder, %since, uid_next = next, "backfilling");
                    UidSource::since(since, next.saturating_sub(1))
                }
                // Without UIDNEXT the range to slice is unknown: one search.
                None => {
                    let v = uids_since(session, since).await?;
                    info!(mailbox = %ingestor.mailbox_id, %folder, messages = v.len(), %since, "backfilling");
                    UidSource::found(v)
                }
            }
        }
    };
    let (stats, stored_last, ended) = pipeline(session, ingestor, folder, validity, modseq, uids, stop).await?;
    if ended == Ended::Stopped {
        info!(mailbox = %ingestor.mailbox_id, %folder, last_uid = ?stored_last, "stopping: cursor committed");
        return Ok(stats);
    }
    let last = stored_last.or(known).unwrap_or(0);
    // Every UID below UIDNEXT that the search did not return was expunged (or lies before the
    // backfill window): move the cursor past them, so they are not searched for again and the
    // IDLE loop does not take them for new mail.
    if let Some(end) = mailbox.uid_next.map(|n| n.saturating_sub(1))
        && (end > last || known.is_none())
    {
        let mut tx = ingestor.store.begin().await?;
        tx.put_cursor(
            &cursor_for(ingestor, folder, validity, end.max(last), modseq),
            ingestor.store.now(),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(stats)
}

/// The UIDs [`pipeline`] fetches, in ascending order, a batch at a time: found already, or
/// found by searching the backfill window a slice of UIDs at a time (see [`SEARCH_SLICE`]),
/// each slice when the ones before it are used up; or, past a slice whose every message was
/// inside the window, whole ranges of UIDs fetched without a search (see [`Chunk::Range`]).
#[derive(Debug)]
struct UidSource {
    found: std::collections::VecDeque<u32>,
    slices: Option<Slices>,
}

/// The part of a backfill window not searched yet.
#[derive(Debug)]
struct Slices {
    window: Window,
    /// The first UID not searched (or fetched) yet.
    next: u32,
    /// The last UID to search.
    last: u32,
    /// UIDs in the next slice.
    size: u32,
    /// `Some(width)` while the rest is fetched a range of `width` UIDs at a time without a
    /// search (the slices searched last had every message inside the window).
    range: Option<u32>,
}

/// The first day of a backfill window: `UID SEARCH SINCE` that day, as the server tells it, or
/// the INTERNALDATE of a message fetched without a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    since: chrono::NaiveDate,
}

/// Where a message lies against a [`Window`], by its INTERNALDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Inside,
    Before,
    /// Too close to the first day to tell: `SINCE` compares dates "disregarding time and
    /// timezone" (RFC 3501), and servers differ in whose date that is (the one written in the
    /// INTERNALDATE, or the server's own zone's). Asked of the server.
    Unsure,
}

impl Window {
    fn new(since: DateTime<Utc>) -> Self {
        Window {
            since: since.date_naive(),
        }
    }

    /// `SINCE <date>`.
    fn criteria(&self) -> String {
        format!("SINCE {}", self.since.format("%d-%b-%Y"))
    }

    /// Every zone is within a day of UTC: a message whose UTC date is after the first day is
    /// inside the window in any zone, one whose UTC date is two days before it or earlier is
    /// outside it in any zone. No date at all: unsure.
    fn side(&self, internal: Option<DateTime<chrono::FixedOffset>>) -> Side {
        let Some(t) = internal else {
            return Side::Unsure;
        };
        let day = t.naive_utc().date();
        if day > self.since {
            Side::Inside
        } else if day < self.since - chrono::Days::new(1) {
            Side::Before
        } else {
            Side::Unsure
        }
    }
}

/// The largest slice: a folder of old mail below the window is crossed in few searches.
const MAX_SEARCH_SLICE: u32 = 64 * BATCH as u32;

/// The widest range of UIDs fetched without a search (where UIDs are sparse, a range of
/// [`BATCH`] UIDs holds fewer messages than a batch).
const MAX_RANGE: u32 = 8 * BATCH as u32;

/// The size of the slice after one of `size` UIDs in which `found` messages were inside the
/// window: twice as large when it found less than a batch (old mail, below the window: fewer
/// round trips across it), back to the smallest when it found a batch or more (inside the
/// window: each search holds the pipeline back only briefly).
fn next_slice_size(size: u32, found: usize) -> u32 {
    if found < BATCH {
        size.saturating_mul(2).min(MAX_SEARCH_SLICE)
    } else {
        SEARCH_SLICE
    }
}

/// After a range of `width` UIDs returned `returned` messages, `outside` of them outside the
/// window: the next range's width, or `None` to search again. Searching costs the server a look
/// at every message's date (Dovecot on Maildir reads each file's time: 60–90 ms for the
/// benchmark's 50,000 messages, a sixth of what fetching their header fields takes), fetching a
/// message outside the window costs a fetch for nothing: more than one in eight outside, and
/// the folder is searched again. A range that returned fewer than half a batch (expunged
/// messages leave UIDs unused) is followed by a wider one, one that returned more than a batch
/// (dense again) by a narrower one.
fn next_range(width: u32, returned: usize, outside: usize) -> Option<u32> {
    if outside * 8 > returned {
        None
    } else if returned > BATCH {
        let narrower = u64::from(width) * BATCH as u64 / returned as u64;
        Some(u32::try_from(narrower).unwrap_or(MAX_RANGE).max(BATCH as u32))
    } else if returned < BATCH / 2 {
        Some(width.saturating_mul(2).min(MAX_RANGE))
    } else {
        Some(width)
    }
}

/// What one `UID FETCH` of a sync asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// These messages (found by a search; every one is wanted).
    Uids(Vec<u32>),
    /// Every message whose UID is in `first..=last`, fetched without a search: those outside
    /// the backfill window are dropped by their INTERNALDATE ([`Window::side`]).
    Range { first: u32, last: u32, window: Window },
}

impl Chunk {
    /// The last UID this chunk covers: the cursor may move up to it once it is stored.
    fn last(&self) -> u32 {
        match self {
            Chunk::Uids(uids) => uids.last().copied().unwrap_or(0),
            Chunk::Range { last, .. } => *last,
        }
    }
}

impl UidSource {
    fn found(uids: Vec<u32>) -> Self {
        UidSource {
            found: uids.into(),
            slices: None,
        }
    }

    fn since(since: DateTime<Utc>, last: u32) -> Self {
        UidSource {
            found: Default::default(),
            // An empty folder (UIDNEXT 1) has nothing to search.
            slices: (last > 0).then(|| Slices {
                window: Window::new(since),
                next: 1,
                last,
                size: SEARCH_SLICE,
                range: None,
            }),
        }
    }

    /// The next batch: the UIDs found so far, at most [`BATCH`] of them, else the next range;
    /// `None` when there are no more.
    async fn next_batch(&mut self, session: &mut Session) -> Result<Option<Chunk>, SourceError> {
        while self.found.len() < BATCH
            && let Some(s) = &mut self.slices
            && s.range.is_none()
        {
            let first = s.next;
            let end = first.saturating_add(s.size - 1).min(s.last);
            let query = format!("UID {first}:{end} {}", s.window.criteria());
            let found = io_timeout("UID SEARCH SINCE", uid_search(session, &query)).await?;
            // Anything outside the slice is ignored: the batches stay in ascending order.
            let found: Vec<u32> = found.into_iter().filter(|u| (first..=end).contains(u)).collect();
            // A slice that found a batch or more: if it holds no other message (a look at UIDs
            // alone, which costs the server little), every message was inside the window, and
            // the messages after it are fetched in ranges without a search.
            if found.len() >= BATCH {
                let all = io_timeout("UID SEARCH", uid_search(session, &format!("UID {first}:{end}"))).await?;
                if all.iter().filter(|u| (first..=end).contains(*u)).count() == found.len() {
                    s.range = Some(BATCH as u32);
                }
            }
            s.size = next_slice_size(s.size, found.len());
            self.found.extend(found);
            match end.checked_add(1) {
                Some(next) if next <= s.last => s.next = next,
                _ => self.slices = None,
            }
        }
        if !self.found.is_empty() {
            let n = self.found.len().min(BATCH);
            return Ok(Some(Chunk::Uids(self.found.drain(..n).collect())));
        }
        let Some(s) = &mut self.slices else {
            return Ok(None);
        };
        let Some(width) = s.range else {
            return Ok(None);
        };
        let (first, window) = (s.next, s.window);
        let last = first.saturating_add(width - 1).min(s.last);
        match last.checked_add(1) {
            Some(next) if next <= s.last => s.next = next,
            _ => self.slices = None,
        }
        Ok(Some(Chunk::Range { first, last, window }))
    }

    /// What the range `first..=last` returned: `returned` messages, `outside` of them outside
    /// the window (see [`next_range`]).
    fn fetched_range(&mut self, first: u32, last: u32, returned: usize, outside: usize) {
        if let Some(s) = &mut self.slices
            && s.range.is_some()
        {
            s.range = next_range(last - first + 1, returned, outside);
            if s.range.is_none() {
                debug!(
                    first,
                    last, returned, outside, "a range held mail from before the window: searching again"
                );
                s.size = SEARCH_SLICE;
            }
        }
    }
}

/// Why [`pipeline`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Done,
    Stopped,
}

/// Fetches, parses and stores `uids` in batches, as a pipeline of three stages on tasks of
/// their own, so they spread over the runtime's threads: while batch N+1 is read from the
/// server here, batch N is parsed and batch N-1 stored, and the server is asked for the next
/// batch without waiting for the store (the queues between stages hold one batch each, so a
/// slow store soon holds the reading back). One task decides and stores, batch after batch in
/// order, each with its cursor, so the cursor only ever moves past stored messages, and each
/// batch is matched against the leads the batches before it created (a bounce names only
/// leads that exist). When the next batch is already waiting as one is stored, it goes into
/// the same transaction (up to [`MESSAGES_PER_TX`] messages), unless the stored batches
/// created leads: those must be committed, and in the index, before the next batch is decided.
///
/// When `stop` fires, no further batch is read and the ones already read are stored. A failed
/// read also stores what was read before it, then returns the error; a failed store stops
/// everything. When this future is dropped the tasks are aborted: the store in flight rolls
/// its transaction back, and what was not stored is fetched again next time.
///
/// Returns what was stored, the last UID stored, and why it ended.
async fn pipeline(
    session: &mut Session,
    ingestor: &Ingestor,
    folder: &str,
    validity: u32,
    modseq: Option<u64>,
    mut uids: UidSource,
    stop: &CancellationToken,
) -> Result<(IngestStats, Option<u32>, Ended), SourceError> {
    let (raw_tx, mut raw_rx) = tokio::sync::mpsc::channel::<(RawBatch, u32)>(1);
    let (parsed_tx, mut parsed_rx) = tokio::sync::mpsc::channel::<(Vec<FetchedMail>, u32)>(1);
    let owned_folder = folder.to_owned();
    let parser = AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some((raw, last)) = raw_rx.recv().await {
            if parsed_tx
                .send((raw.parse(&owned_folder, validity), last))
                .await
                .is_err()
            {
                break;
            }
        }
        anyhow::Ok(())
    }));
    let (storer, owned_folder) = (ingestor.clone(), folder.to_owned());
    let store = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut stats = IngestStats::default();
        let mut stored_last = None;
        let mut sent_before = super::SentBefore::default();
        while let Some(mut next) = parsed_rx.recv().await {
            let mut tx = storer.begin().await?;
            let mut last_in_tx;
            loop {
                let (batch, last) = next;
                let cursor = cursor_for(&storer, &owned_folder, validity, last, modseq);
                let decided = storer.decide(&mut tx, &batch, &mut sent_before).await?;
                stats += storer.store(&mut tx, &batch, decided, Some(&cursor)).await?;
                last_in_tx = last;
                if tx.created_leads() || tx.messages() >= MESSAGES_PER_TX {
                    break;
                }
                match parsed_rx.try_recv() {
                    Ok(waiting) => next = waiting,
                    Err(_) => break,
                }
            }
            storer.commit(tx).await?;
            stored_last = Some(last_in_tx);
        }
        anyhow::Ok((stats, stored_last))
    }));

    let mut ended = Ended::Done;
    let mut read_error = None;
    loop {
        if stop.is_cancelled() {
            ended = Ended::Stopped;
            break;
        }
        let chunk = match uids.next_batch(session).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        let last = chunk.last();
        match fetch_batch(session, folder, &chunk).await {
            // A closed queue means the parser or the store failed: the error is returned below.
            Ok((raw, outside)) => {
                if let Chunk::Range { first, last, .. } = chunk {
                    uids.fetched_range(first, last, raw.headers.len() + outside, outside);
                }
                if raw_tx.send((raw, last)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
    }
    drop(raw_tx);
    // The store ends when the parser does; its error, then the parser's, then the read's.
    let (stats, stored_last) = joined(store).await?;
    joined(parser).await?;
    match read_error {
        Some(e) => Err(e),
        None => Ok((stats, stored_last, ended)),
    }
}

/// Waits for a task of the pipeline.
async fn joined<T>(handle: AbortOnDropHandle<anyhow::Result<T>>) -> Result<T, SourceError> {
    match handle.await {
        Ok(result) => Ok(result?),
        Err(e) => Err(SourceError::Transient(anyhow!("ingesting mail failed: {e}"))),
    }
}

/// What Rapport fetches of each message. BODYSTRUCTURE describes the MIME parts without their
/// content: enough for attachment names.
pub fn fetch_items() -> String {
    format!("(UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS ({FETCHED_FIELDS})])")
}

/// Sends `command` with a tag of its own and reads the answer itself, past async-imap's
/// decoder, which holds nothing at this point: the connection never hands it anything after a
/// tagged completion (see `framing`), so after its last command its buffer is empty, and it
/// finds the connection as it left it. Every untagged response goes to `untagged`; the tagged
/// completion decides the result. For the commands whose answers are large (see
/// [`super::fetch`]).
async fn run_command(
    session: &mut Session,
    what: &str,
    command: &str,
    mut untagged: impl FnMut(&[u8]),
) -> Result<(), SourceError> {
    use tokio::io::AsyncWriteExt;
    let conn = session.get_mut();
    conn.commands += 1;
    let tag = format!("R{}", conn.commands);
    let line = format!("{tag} {command}\r\n");
    let sent = async {
        conn.write_all(line.as_bytes()).await?;
        conn.flush().await
    };
    let failed = |e: std::io::Error| SourceError::Transient(anyhow::Error::from(e).context(what.to_owned()));
    sent.await.map_err(failed)?;
    loop {
        let Some(response) = conn.response().await.map_err(failed)? else {
            return Err(SourceError::Transient(anyhow!(
                "{what}: the server closed the connection"
            )));
        };
        if response.starts_with(b"* ") {
            untagged(response);
            continue;
        }
        let response = String::from_utf8_lossy(response);
        let response = response.trim_end();
        if response.is_empty() {
            continue;
        }
        let status = response.strip_prefix(tag.as_str()).and_then(|r| r.strip_prefix(' '));
        let ok = |s: &str| {
            let word = s.split(' ').next().unwrap_or_default();
            word.eq_ignore_ascii_case("OK")
        };
        return match status {
            Some(s) if ok(s) => Ok(()),
            Some(s) => Err(SourceError::Transient(anyhow!("{what} failed: {s}"))),
            None => Err(SourceError::Transient(anyhow!(
                "{what}: unexpected response {response:?}"
            ))),
        };
    }
}

/// Runs `UID FETCH <set> <items>` (see [`run_command`]). A response that cannot be read is
/// logged, and its message kept as unreadable. Public for the benchmark's raw client.
pub async fn uid_fetch(session: &mut Session, set: &str, items: &str) -> Result<Fetched, SourceError> {
    let mut fetched = Fetched::default();
    let command = format!("UID FETCH {set} {items}");
    run_command(session, "UID FETCH", &command, |response| {
        if let Err(e) = fetched.read_response(response) {
            warn!(error = %e, "an unreadable FETCH response: its message, if it names one, is recorded as unreadable");
        }
    })
    .await?;
    Ok(fetched)
}

/// Runs `UID SEARCH <criteria>` (see [`run_command`]); the UIDs found, ascending. async-imap
/// parses an answer that spans several reads again from its start after each read, which
/// for the 50,000 UIDs of a large backfill took as many instructions as storing 7,000
/// messages. Public for the benchmark's raw client.
pub async fn uid_search(session: &mut Session, criteria: &str) -> Result<Vec<u32>, SourceError> {
    let mut uids = Vec::new();
    let command = format!("UID SEARCH {criteria}");
    run_command(session, "UID SEARCH", &command, |response| {
        uids.extend(super::fetch::search_uids(response));
    })
    .await?;
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}

/// One batch as the server sent it: the header fields of each message, and the whole message
/// of those that may be bounces. Parsing is left to [`RawBatch::parse`], off the connection's
/// task, so the next FETCH can be read meanwhile.
struct RawBatch {
    headers: Fetched,
    /// Whole messages.
    bodies: Fetched,
}

/// Fetches the header fields of the messages of `chunk`, and the whole message of those that
/// may be bounces. Of a [`Chunk::Range`], the messages outside its window are dropped: the
/// batch, and how many were dropped.
async fn fetch_batch(session: &mut Session, folder: &str, chunk: &Chunk) -> Result<(RawBatch, usize), SourceError> {
    let set = match chunk {
        Chunk::Uids(uids) => uid_set(uids),
        Chunk::Range { first, last, .. } => format!("{first}:{last}"),
    };
    let mut headers = io_timeout("UID FETCH", uid_fetch(session, &set, &fetch_items())).await?;
    // Messages asked for but not returned must be gone (expunged); if the server still has any
    // of them, this batch is incomplete and the cursor must not pass it. Which messages a range
    // holds, a search of its UIDs tells (no dates: the server answers from its index), unless
    // every UID of the range was returned.
    let returned: HashSet<u32> = headers.messages().iter().map(|m| m.uid).collect();
    let asked = match chunk {
        Chunk::Uids(uids) => uids.clone(),
        Chunk::Range { first, last, .. }
            if headers.unreadable() == 0 && (*first..=*last).all(|u| returned.contains(&u)) =>
        {
            Vec::new()
        }
        Chunk::Range { .. } => io_timeout("UID SEARCH", uid_search(session, &format!("UID {set}"))).await?,
    };
    let missing: Vec<u32> = asked.iter().copied().filter(|u| !returned.contains(u)).collect();
    if !missing.is_empty() {
        let still_there = io_timeout("UID SEARCH", uid_search(session, &format!("UID {}", uid_set(&missing)))).await?;
        if !still_there.is_empty() && still_there.len() <= headers.unreadable() {
            // As many responses could not be read (before their UID) as messages are missing:
            // those are the messages, recorded as unreadable rather than fetched again forever.
            warn!(%folder, uids = %uid_set(&still_there), "recording messages whose FETCH response could not be read as unreadable");
            for uid in still_there {
                headers.add_unreadable(uid);
            }
        } else if !still_there.is_empty() {
            return Err(SourceError::Transient(anyhow!(
                "the server returned {} of {} messages asked for in {folder}",
                returned.len(),
                missing.len() + returned.len()
            )));
        }
    }
    let mut outside = 0;
    if let Chunk::Range { window, .. } = chunk {
        outside = drop_outside(session, &mut headers, window).await?;
    }
    let bounces: Vec<u32> = headers
        .messages()
        .iter()
        .filter(|m| headers.section(m).is_some_and(super::headers::may_be_bounce))
        .map(|m| m.uid)
        .collect();
    let mut bodies = Fetched::default();
    if !bounces.is_empty() {
        bodies = io_timeout(
            "UID FETCH bodies",
            uid_fetch(session, &uid_set(&bounces), "(UID BODY.PEEK[])"),
        )
        .await?;
        if bodies.len() < bounces.len() {
            return Err(SourceError::Transient(anyhow!(
                "the server returned {} of {} message bodies asked for in {folder}",
                bodies.len(),
                bounces.len()
            )));
        }
    }
    Ok((RawBatch { headers, bodies }, outside))
}

/// Drops the messages of `headers` that lie outside `window` (the unreadable ones inside it are
/// kept, to be recorded as such); those whose date is too close to its first day to tell, or
/// unknown, are asked of the server, in one search. Returns how many were dropped.
async fn drop_outside(session: &mut Session, headers: &mut Fetched, window: &Window) -> Result<usize, SourceError> {
    // A message whose response broke before its date (or was added by its UID alone) is
    // unsure: the server says whether it is inside the window.
    let side = |m: &MessageItems| window.side(m.internal_date());
    let unsure: Vec<u32> = headers
        .messages()
        .iter()
        .filter(|m| side(m) == Side::Unsure)
        .map(|m| m.uid)
        .collect();
    let confirmed: HashSet<u32> = if unsure.is_empty() {
        HashSet::new()
    } else {
        let query = format!("UID {} {}", uid_set(&unsure), window.criteria());
        io_timeout("UID SEARCH SINCE", uid_search(session, &query))
            .await?
            .into_iter()
            .collect()
    };
    let before = headers.len();
    headers.retain(|m| match side(m) {
        Side::Inside => true,
        Side::Before => false,
        Side::Unsure => confirmed.contains(&m.uid),
    });
    Ok(before - headers.len())
}

/// Runs a network step that fails with a [`SourceError`] with [`IO_TIMEOUT`].
async fn io_timeout<T>(what: &str, fut: impl Future<Output = Result<T, SourceError>>) -> Result<T, SourceError> {
    tokio::time::timeout(IO_TIMEOUT, fut).await.unwrap_or_else(|_| {
        Err(SourceError::Transient(anyhow!(
            "{what}: no answer within {IO_TIMEOUT:?}"
        )))
    })
}

impl RawBatch {
    /// The messages of the batch, in UID order. A message whose whole text was fetched is read
    /// from it (a bounce names its failed recipients in its body); a message that cannot be
    /// parsed at all is kept with no headers, to be recorded as unreadable.
    fn parse(self, folder: &str, validity: u32) -> Vec<FetchedMail> {
        let whole: std::collections::HashMap<u32, &[u8]> = self
            .bodies
            .messages()
            .iter()
            .filter_map(|m| Some((m.uid, self.bodies.section(m)?)))
            .collect();
        let mut out: Vec<(u32, FetchedMail)> = Vec::with_capacity(self.headers.len());
        for m in self.headers.messages() {
            if m.broken {
                // What was read of it may be wrong or short (a flag read after the break is
                // missing): recorded as unreadable, as a message that cannot be parsed.
                out.push((m.uid, self.mail(folder, validity, m, None)));
                continue;
            }
            let draft = m.draft;
            let structure_names = || self.headers.attachment_names(m);
            let headers = match whole.get(&m.uid).and_then(|b| MailHeaders::parse(b)) {
                Some(h) if !h.attachments.is_empty() => Some(MailHeaders { draft, ..h }),
                Some(h) => Some(MailHeaders {
                    draft,
                    attachments: structure_names(),
                    ..h
                }),
                None => self
                    .headers
                    .section(m)
                    .and_then(MailHeaders::parse)
                    .map(|h| MailHeaders {
                        draft,
                        attachments: structure_names(),
                        ..h
                    }),
            };
            out.push((m.uid, self.mail(folder, validity, m, headers)));
        }
        // A server may answer for a message twice: the first answer counts.
        out.sort_by_key(|(uid, _)| *uid);
        out.dedup_by_key(|(uid, _)| *uid);
        out.into_iter().map(|(_, m)| m).collect()
    }

    fn mail(&self, folder: &str, validity: u32, m: &MessageItems, headers: Option<MailHeaders>) -> FetchedMail {
        FetchedMail {
            folder: folder.to_owned(),
            item_key: item_key(validity, m.uid),
            headers,
            internal_date: m.internal_date().map(|d| d.with_timezone(&Utc)),
        }
    }
}

/// The key of a message in `mail_seen`: `<UIDVALIDITY>:<UID>` (written without `format!`, once
/// per message fetched).
pub(super) fn item_key(validity: u32, uid: u32) -> String {
    let mut key = String::with_capacity(21);
    key.push_str(itoa::Buffer::new().format(validity));
    key.push(':');
    key.push_str(itoa::Buffer::new().format(uid));
    key
}

/// Syncs every folder once (or until `stop` fires).
pub async fn sync_all(
    session: &mut Session,
    cfg: &ImapConfig,
    ingestor: &Ingestor,
    stop: &CancellationToken,
) -> Result<(IngestStats, String), SourceError> {
    let (list, watch) = folders(session, cfg).await?;
    let mut total = IngestStats::default();
    let mut missing = Vec::new();
    for folder in &list {
        if stop.is_cancelled() {
            break;
        }
        match sync_folder(session, cfg, ingestor, folder, stop).await {
            Ok(s) => total += s,
            // A misnamed folder ("Sent" on a server that calls it "Sent Items") must not keep
            // the other folders from syncing.
            Err(SourceError::MissingFolder(why)) => {
                warn!(mailbox = %ingestor.mailbox_id, "folder skipped, the server refuses to open it: {why}");
                missing.push(why);
            }
            Err(e) => return Err(e),
        }
    }
    if !list.is_empty() && missing.len() == list.len() {
        return Err(SourceError::Transient(anyhow!(
            "no folder could be opened: {}",
            missing.join("; ")
        )));
    }
    Ok((total, watch))
}

/// Connects, syncs every folder once, logs out.
pub async fn sync_once(cfg: &ImapConfig, ingestor: &Ingestor) -> Result<IngestStats, SourceError> {
    let mut session = connect(cfg).await?;
    let (stats, _) = sync_all(&mut session, cfg, ingestor, &CancellationToken::new()).await?;
    logout(session).await;
    Ok(stats)
}

/// Says goodbye to the server, briefly: the connection is dropped either way.
async fn logout(mut session: Session) {
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
}

/// Syncs, then waits for news with IDLE (or sleeps for the poll interval where the server has
/// no IDLE) and syncs again, until `stop` fires (then returns `Ok` after storing the batches
/// already read and logging out). Returns an error otherwise; the caller reconnects.
pub async fn watch(cfg: &ImapConfig, ingestor: &Ingestor, stop: &CancellationToken) -> Result<(), SourceError> {
    let mut session = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        s = connect(cfg) => s?,
    };
    let can_idle = cfg.idle && io("CAPABILITY", session.capabilities()).await?.has_str("IDLE");
    loop {
        let (stats, watch_folder) = sync_all(&mut session, cfg, ingestor, stop).await?;
        if stop.is_cancelled() {
            logout(session).await;
            return Ok(());
        }
        ingestor.synced("imap", &stats).await;
        while session.unsolicited_responses.try_recv().is_ok() {}
        if !can_idle {
            tokio::select! {
                _ = stop.cancelled() => {
                    logout(session).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(cfg.poll_interval) => {}
            }
            continue;
        }
        // Mail that arrived between the sync and this SELECT would never be announced during
        // IDLE: if the folder grew, sync again first.
        let mailbox = io("SELECT", session.select(&watch_folder)).await?;
        check_open(&session, "SELECT")?;
        let synced_to = ingestor
            .store
            .cursor(&ingestor.mailbox_id, &watch_folder)
            .await?
            .filter(|c| c.validity == mailbox.uid_validity.map(i64::from))
            .and_then(|c| c.last_uid)
            .unwrap_or(0);
        if mailbox.uid_next.is_some_and(|next| i64::from(next) > synced_to + 1) {
            continue;
        }
        let mut idle = session.idle();
        io("IDLE", idle.init()).await?;
        // Other folders (Sent) are polled: IDLE ends after the poll interval at the latest.
        let response = {
            let (wait, interrupt) = idle.wait_with_timeout(cfg.poll_interval.min(MAX_IDLE));
            tokio::pin!(wait);
            tokio::select! {
                r = &mut wait => r,
                _ = stop.cancelled() => {
                    // Dropping the interrupt handle ends the wait with ManualInterrupt.
                    drop(interrupt);
                    (&mut wait).await
                }
            }
        }
        .map_err(|e| SourceError::Transient(anyhow::Error::from(e).context("IDLE")))?;
        debug!(mailbox = %ingestor.mailbox_id, ?response, "IDLE ended");
        if stop.is_cancelled() {
            if let Ok(Ok(session)) = tokio::time::timeout(Duration::from_secs(5), idle.done()).await {
                logout(session).await;
            }
            return Ok(());
        }
        if let IdleResponse::ManualInterrupt = response {
            return Err(SourceError::Transient(anyhow!("the server closed the IDLE connection")));
        }
        session = io("ending IDLE", idle.done()).await?;
    }
}

/// The UIDs the server holds in a folder inside the sync window, for `rapport verify`.
pub async fn server_uids(
    session: &mut Session,
    folder: &str,
    since: DateTime<Utc>,
) -> Result<(u32, Vec<u32>), SourceError> {
    let mailbox = io(&format!("EXAMINE {folder}"), session.examine(folder)).await?;
    check_open(session, "EXAMINE")?;
    Ok((mailbox.uid_validity.unwrap_or(0), uids_since(session, since).await?))
}

/// The UIDs of the selected folder's messages received since `since`, ascending.
async fn uids_since(session: &mut Session, since: DateTime<Utc>) -> Result<Vec<u32>, SourceError> {
    io_timeout("UID SEARCH SINCE", uid_search(session, &Window::new(since).criteria())).await
}

/// The file names of the attachments a BODYSTRUCTURE describes: the `filename` of a
/// Content-Disposition, else the `name` of the Content-Type, of every part at any depth.
/// RFC 2047 encoded words and RFC 2231 `filename*` values are decoded.
pub fn attachment_names(bs: &async_imap::imap_proto::BodyStructure<'_>) -> Vec<String> {
    use async_imap::imap_proto::{BodyContentCommon, BodyStructure};
    fn param(params: &async_imap::imap_proto::BodyParams<'_>, key: &str) -> Option<String> {
        let params = params.as_ref()?;
        if let Some((_, v)) = params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return Some(decode_words(v));
        }
        // RFC 2231: `filename*=utf-8''Offer%20Q1.pdf`.
        let star = format!("{key}*");
        let (_, v) = params.iter().find(|(k, _)| k.eq_ignore_ascii_case(&star))?;
        let encoded = v.splitn(3, '\'').nth(2).unwrap_or(v);
        Some(percent_decode(encoded))
    }
    fn name_of(common: &BodyContentCommon<'_>) -> Option<String> {
        common
            .disposition
            .as_ref()
            .and_then(|d| param(&d.params, "filename"))
            .or_else(|| param(&common.ty.params, "name"))
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
    }
    fn walk(bs: &BodyStructure<'_>, out: &mut Vec<String>) {
        match bs {
            BodyStructure::Basic { common, .. } | BodyStructure::Text { common, .. } => {
                out.extend(name_of(common));
            }
            BodyStructure::Message { common, body, .. } => {
                out.extend(name_of(common));
                walk(body, out);
            }
            BodyStructure::Multipart { bodies, .. } => {
                for b in bodies {
                    walk(b, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(bs, &mut out);
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?q?Offerte_Q1.pdf?=`) by letting the MIME parser
/// read the value as a header.
fn decode_words(v: &str) -> String {
    if !v.contains("=?") {
        return v.to_owned();
    }
    let raw = format!("Subject: {v}\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse_headers(raw.as_bytes())
        .and_then(|m| m.subject().map(str::to_owned))
        .unwrap_or_else(|| v.to_owned())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_and_repeated_answers_make_one_unreadable_or_one_readable_message() {
        let mut headers = Fetched::default();
        let responses: [&[u8]; 4] = [
            b"* 1 FETCH (UID 5 BODY[HEADER.FIELDS (FROM)] {21}\r\nFrom: a@b.example\r\n\r\n)\r\n",
            // The section was read, then the response broke: what came after it is unknown.
            b"* 2 FETCH (UID 6 BODY[HEADER.FIELDS (FROM)] {21}\r\nFrom: a@b.example\r\n\r\n FLAGS (\\Draft\r\n",
            // The same message answered twice.
            b"* 1 FETCH (UID 5 BODY[HEADER.FIELDS (FROM)] {21}\r\nFrom: c@d.example\r\n\r\n)\r\n",
            b"* 3 FETCH (FLAGS (\r\n",
        ];
        for r in responses {
            let _ = headers.read_response(r);
        }
        assert_eq!(headers.unreadable(), 1);
        headers.add_unreadable(7);
        let mail = RawBatch {
            headers,
            bodies: Fetched::default(),
        }
        .parse("INBOX", 9);
        let keys: Vec<_> = mail
            .iter()
            .map(|m| (m.item_key.as_str(), m.headers.is_some()))
            .collect();
        assert_eq!(keys, [("9:5", true), ("9:6", false), ("9:7", false)]);
        assert_eq!(mail[0].headers.as_ref().unwrap().from, ["a@b.example"]);
    }

    #[test]
    fn item_keys_are_validity_colon_uid() {
        assert_eq!(item_key(9, 5), "9:5");
        assert_eq!(item_key(0, 0), "0:0");
        assert_eq!(item_key(u32::MAX, 1_234_567), "4294967295:1234567");
    }

    #[test]
    fn search_slices_grow_below_the_window_and_shrink_inside_it() {
        assert_eq!(next_slice_size(SEARCH_SLICE, 0), 2 * SEARCH_SLICE);
        assert_eq!(next_slice_size(2 * SEARCH_SLICE, BATCH - 1), 4 * SEARCH_SLICE);
        assert_eq!(next_slice_size(MAX_SEARCH_SLICE, 0), MAX_SEARCH_SLICE);
        assert_eq!(next_slice_size(MAX_SEARCH_SLICE, BATCH), SEARCH_SLICE);
        assert_eq!(next_slice_size(SEARCH_SLICE, 2 * BATCH), SEARCH_SLICE);
    }

    #[test]
    fn a_window_tells_inside_from_before_and_asks_near_its_first_day() {
        let w = Window::new("2026-09-01T15:00:00Z".parse().unwrap());
        assert_eq!(w.criteria(), "SINCE 01-Sep-2026");
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap());
        assert_eq!(w.side(at("2026-09-02T00:00:00Z")), Side::Inside);
        assert_eq!(w.side(at("2026-12-01T09:30:00+02:00")), Side::Inside);
        // In UTC the day before the first: inside where the server's zone is ahead of it.
        assert_eq!(w.side(at("2026-08-31T23:30:00+00:00")), Side::Unsure);
        // Written as the first day, but the day before in UTC.
        assert_eq!(w.side(at("2026-09-01T08:00:00+14:00")), Side::Unsure);
        assert_eq!(w.side(at("2026-09-01T23:59:59-12:00")), Side::Inside);
        assert_eq!(w.side(at("2026-08-31T00:00:00Z")), Side::Unsure);
        // Two days before in UTC: before the first day in every zone.
        assert_eq!(w.side(at("2026-08-30T23:59:59Z")), Side::Before);
        assert_eq!(w.side(at("2020-01-01T00:00:00Z")), Side::Before);
        assert_eq!(w.side(None), Side::Unsure);
    }

    #[test]
    fn ranges_go_on_while_nearly_all_their_mail_is_inside_the_window() {
        let width = BATCH as u32;
        assert_eq!(next_range(width, BATCH, 0), Some(width));
        assert_eq!(next_range(width, BATCH, BATCH / 8), Some(width));
        assert_eq!(next_range(width, BATCH, BATCH / 8 + 1), None);
        assert_eq!(next_range(width, 10, 10), None);
        // Sparse UIDs (expunged mail): wider ranges, up to a limit.
        assert_eq!(next_range(width, BATCH / 2 - 1, 0), Some(2 * width));
        assert_eq!(next_range(MAX_RANGE, 0, 0), Some(MAX_RANGE));
        // Dense again after a sparse stretch: back to about a batch per range.
        assert_eq!(next_range(MAX_RANGE, 8 * BATCH, 0), Some(width));
        assert_eq!(next_range(4 * width, 2 * BATCH, 0), Some(2 * width));
        let r = Chunk::Range {
            first: 5,
            last: 9,
            window: Window::new(Utc::now()),
        };
        assert_eq!(r.last(), 9);
        assert_eq!(Chunk::Uids(vec![3, 4, 8]).last(), 8);
    }

    #[test]
    fn uid_sets_are_compressed() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }

    /// A scripted IMAP server's listener, on a free loopback port.
    async fn scripted_listener() -> (tokio::net::TcpListener, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    type ClientLines = tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>;

    /// Accepts one client and greets it: the lines it sends, and the way back to it.
    async fn accept_greeted(listener: tokio::net::TcpListener) -> (ClientLines, tokio::net::tcp::OwnedWriteHalf) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        w.write_all(b"* OK ready\r\n").await.unwrap();
        (tokio::io::BufReader::new(r).lines(), w)
    }

    /// A plain-text config for a scripted server on `port`, its password file in `dir`.
    fn scripted_server_config(port: u16, dir: &std::path::Path) -> ImapConfig {
        std::fs::write(dir.join("pw"), "pw").unwrap();
        ImapConfig {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            username: "alice".into(),
            auth: ImapAuth::Password(crate::config::SecretSource::File(dir.join("pw"))),
            folders: Vec::new(),
            backfill_days: 90,
            poll_interval: Duration::from_secs(60),
            idle: false,
            ca_file: None,
        }
    }

    /// The cause of the flaky `dropped_connection_recovers_without_duplicates`: when the server
    /// dies between the untagged answer and the tagged completion, async-imap hands back what
    /// it read as a complete answer. A peer that closes at a chosen byte makes it deterministic
    /// (Dovecot, killed at a random moment, only sometimes closes at this point).
    #[tokio::test]
    async fn an_answer_cut_short_by_a_closed_connection_is_an_error() {
        use tokio::io::AsyncWriteExt;
        let (listener, port) = scripted_listener().await;
        let server = tokio::spawn(async move {
            let (mut lines, mut w) = accept_greeted(listener).await;
            let login = lines.next_line().await.unwrap().unwrap();
            let tag = login.split(' ').next().unwrap().to_owned();
            w.write_all(format!("{tag} OK logged in\r\n").as_bytes()).await.unwrap();
            let search = lines.next_line().await.unwrap().unwrap();
            assert!(search.contains("UID SEARCH SINCE"), "{search}");
            w.write_all(b"* SEARCH 1 2\r\n").await.unwrap();
            w.shutdown().await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let cfg = scripted_server_config(port, dir.path());
        let mut session = connect(&cfg).await.unwrap();
        let err = uids_since(&mut session, Utc::now()).await.unwrap_err();
        assert!(format!("{err:#}").contains("closed the connection"), "{err:#}");
        server.await.unwrap();
    }

    /// A range whose FETCH answer has a response broken before its UID: which message that was,
    /// a search of the range and then of the missing UIDs tells, and it is recorded as
    /// unreadable (the server says it is inside the window); a message from before the window
    /// is dropped, one inside it kept. A range the server answers only in part is an error: the
    /// cursor must not pass the message left out.
    #[tokio::test]
    async fn a_range_records_a_response_broken_before_its_uid_and_drops_old_mail() {
        use tokio::io::AsyncWriteExt;
        let (listener, port) = scripted_listener().await;
        let server = tokio::spawn(async move {
            let (mut lines, mut w) = accept_greeted(listener).await;
            let mut asked = Vec::new();
            let answers: [&[u8]; 8] = [
                b"",
                b"* 1 FETCH (UID 1 INTERNALDATE \"01-Dec-2026 10:00:00 +0000\" \
                  BODY[HEADER.FIELDS (FROM)] {19}\r\nFrom: a@b.example\r\n)\r\n\
                  * 2 FETCH (FLAGS (((\r\n\
                  * 3 FETCH (UID 3 INTERNALDATE \"01-Jan-2020 10:00:00 +0000\" \
                  BODY[HEADER.FIELDS (FROM)] {19}\r\nFrom: c@d.example\r\n)\r\n",
                b"* SEARCH 1 2 3\r\n",
                b"* SEARCH 2\r\n",
                b"* SEARCH 2\r\n",
                b"* 4 FETCH (UID 4 INTERNALDATE \"01-Dec-2026 10:00:00 +0000\" \
                  BODY[HEADER.FIELDS (FROM)] {19}\r\nFrom: a@b.example\r\n)\r\n",
                b"* SEARCH 4 5\r\n",
                b"* SEARCH 5\r\n",
            ];
            for answer in answers {
                let line = lines.next_line().await.unwrap().unwrap();
                let (tag, command) = line.split_once(' ').unwrap();
                asked.push(command.split(" (").next().unwrap().to_owned());
                w.write_all(answer).await.unwrap();
                w.write_all(format!("{tag} OK done\r\n").as_bytes()).await.unwrap();
            }
            asked
        });
        let dir = tempfile::tempdir().unwrap();
        let cfg = scripted_server_config(port, dir.path());
        let mut session = connect(&cfg).await.unwrap();
        let chunk = Chunk::Range {
            first: 1,
            last: 3,
            window: Window::new("2026-09-01T00:00:00Z".parse().unwrap()),
        };
        let (raw, outside) = fetch_batch(&mut session, "INBOX", &chunk).await.unwrap();
        assert_eq!(outside, 1, "the message of 2020");
        let kept: Vec<(u32, bool)> = raw.headers.messages().iter().map(|m| (m.uid, m.broken)).collect();
        assert_eq!(kept, [(1, false), (2, true)]);
        let mail = raw.parse("INBOX", 9);
        assert_eq!(mail.len(), 2);
        assert!(mail[1].headers.is_none(), "recorded as unreadable");
        let chunk = Chunk::Range {
            first: 4,
            last: 5,
            window: Window::new("2026-09-01T00:00:00Z".parse().unwrap()),
        };
        let Err(e) = fetch_batch(&mut session, "INBOX", &chunk).await else {
            panic!("a message left out of the answer was passed over");
        };
        assert!(e.to_string().contains("returned 1 of 2"), "{e}");
        drop(session);
        let asked = server.await.unwrap();
        assert_eq!(
            asked[1..],
            [
                "UID FETCH 1:3",
                "UID SEARCH UID 1:3",
                "UID SEARCH UID 2",
                "UID SEARCH UID 2 SINCE 01-Sep-2026",
                "UID FETCH 4:5",
                "UID SEARCH UID 4:5",
                "UID SEARCH UID 5"
            ]
        );
    }

    #[test]
    fn xoauth2_answers_once_then_empty() {
        use async_imap::Authenticator;
        let mut a = XOAuth2 {
            user: "u@example.com".into(),
            token: "tok".into(),
            sent: false,
        };
        assert_eq!(a.process(b""), "user=u@example.com\x01auth=Bearer tok\x01\x01");
        assert_eq!(a.process(b"{\"status\":\"401\"}"), "");
    }
}
