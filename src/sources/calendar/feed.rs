//! ICS feeds: the "secret address" a Google or Outlook calendar publishes, or a local file.
//! A URL is polled with `If-None-Match` / `If-Modified-Since`; an unchanged feed costs one
//! request and no parsing (a server that ignores the condition but sends the same ETag or the
//! same bytes costs no parsing either). The feed is one calendar object read whole, so an event missing
//! from it is gone. The URL holds a secret: it is never logged.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::ics::{Window, parse_ics};
use super::{CalendarChanges, CalendarIngestor, CalendarObject, CalendarStats};
use crate::config::IcsLocation;
use crate::sources::SourceError;
use crate::store::SyncCursor;

/// The object name of a feed in `calendar_events.resource`.
pub const FEED_OBJECT: &str = "feed";

/// What the last fetch of a URL feed returned, kept in the calendar's sync cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FeedValidators {
    etag: Option<String>,
    last_modified: Option<String>,
    /// The window's first day when it was read: a moved window needs the whole feed again.
    window_start: Option<String>,
    /// FNV-1a hash of the body, for servers that ignore conditional requests and send no ETag.
    #[serde(default)]
    content_hash: Option<String>,
}

/// FNV-1a, 64 bits: enough to tell whether a feed's bytes changed.
fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Reads the feed once and records what changed.
pub async fn sync_feed(
    location: &IcsLocation,
    ingestor: &CalendarIngestor,
    client: &reqwest::Client,
    window: &Window,
) -> Result<CalendarStats, SourceError> {
    match location {
        IcsLocation::File(path) => {
            let text = read_file(path).await?;
            apply_text(ingestor, &text, None, window, None).await
        }
        IcsLocation::Url(url) => sync_url(url, ingestor, client, window).await,
    }
}

async fn read_file(path: &Path) -> Result<String, SourceError> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading the calendar file {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn apply_text(
    ingestor: &CalendarIngestor,
    text: &str,
    etag: Option<String>,
    window: &Window,
    cursor: Option<&SyncCursor>,
) -> Result<CalendarStats, SourceError> {
    let parsed = parse_ics(text, window, ingestor.rep_time_zone);
    ingestor.report_problems(FEED_OBJECT, &parsed.problems);
    let changes = CalendarChanges {
        complete: true,
        updated: vec![CalendarObject {
            href: FEED_OBJECT.into(),
            etag,
            instances: parsed.instances,
        }],
        deleted: Vec::new(),
    };
    Ok(ingestor.apply(&changes, window, cursor).await?)
}

/// 401 and 403 are refused credentials (the secret in the URL was revoked); any other
/// failure may pass.
fn check_status(status: reqwest::StatusCode) -> Result<(), SourceError> {
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(SourceError::Auth(format!("the ICS feed answered {status}")));
    }
    if !status.is_success() {
        return Err(SourceError::Transient(anyhow::anyhow!(
            "the ICS feed answered {status}"
        )));
    }
    Ok(())
}

/// `rapport doctor`: reads the feed once, stores nothing, and says how many occurrences fall in
/// the window and how many entries cannot be read.
pub async fn probe(
    location: &IcsLocation,
    client: &reqwest::Client,
    window: &Window,
    tz: chrono_tz::Tz,
) -> Result<String, SourceError> {
    let text = match location {
        IcsLocation::File(path) => read_file(path).await?,
        IcsLocation::Url(url) => {
            let resp =
                client.get(url).send().await.map_err(|e| {
                    SourceError::Transient(anyhow::anyhow!("fetching the ICS feed: {}", e.without_url()))
                })?;
            check_status(resp.status())?;
            resp.text()
                .await
                .map_err(|e| SourceError::Transient(anyhow::anyhow!("reading the ICS feed: {}", e.without_url())))?
        }
    };
    let parsed = parse_ics(&text, window, tz);
    Ok(format!(
        "{} occurrence(s) in the window, {} unreadable entr{}",
        parsed.instances.len(),
        parsed.problems.len(),
        if parsed.problems.len() == 1 { "y" } else { "ies" }
    ))
}

async fn sync_url(
    url: &str,
    ingestor: &CalendarIngestor,
    client: &reqwest::Client,
    window: &Window,
) -> Result<CalendarStats, SourceError> {
    let scope = "feed";
    let cursor = ingestor.store.cursor(&ingestor.calendar_id, scope).await?;
    let before: FeedValidators = cursor
        .as_ref()
        .and_then(|c| c.token.as_deref())
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let window_start = window.start.date_naive().to_string();
    let mut req = client.get(url);
    let same_window = before.window_start.as_deref() == Some(window_start.as_str());
    if same_window {
        if let Some(e) = &before.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        if let Some(m) = &before.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| SourceError::Transient(anyhow::anyhow!("fetching the ICS feed: {}", e.without_url())))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        // Nothing new in the feed, but meetings may have ended since the last look.
        return Ok(ingestor.apply(&CalendarChanges::default(), window, None).await?);
    }
    check_status(status)?;
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut after = FeedValidators {
        etag: header(reqwest::header::ETAG),
        last_modified: header(reqwest::header::LAST_MODIFIED),
        window_start: Some(window_start),
        content_hash: None,
    };
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| SourceError::Transient(anyhow::anyhow!("reading the ICS feed: {}", e.without_url())))?;
    after.content_hash = Some(content_hash(&bytes));
    // Some servers (Radicale) answer a conditional GET with the whole, unchanged body.
    let unchanged = same_window
        && (after.content_hash == before.content_hash || (after.etag.is_some() && after.etag == before.etag));
    if unchanged {
        return Ok(ingestor.apply(&CalendarChanges::default(), window, None).await?);
    }
    let text = String::from_utf8_lossy(&bytes);
    let cursor = SyncCursor {
        source_id: ingestor.calendar_id.clone(),
        scope: scope.into(),
        token: serde_json::to_string(&after).ok(),
        ..Default::default()
    };
    apply_text(ingestor, &text, after.etag.clone(), window, Some(&cursor)).await
}
