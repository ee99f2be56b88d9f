//! Google Calendar through google-calendar3: `events.list` with `singleEvents=true` (Google
//! expands the series; each occurrence is its own entry with `recurringEventId` and
//! `originalStartTime`), every page followed, and the `nextSyncToken` of the last page kept for
//! incremental syncs. A token Google no longer accepts (410 Gone) means a full resync; rate
//! limits (403 `rateLimitExceeded` / `userRateLimitExceeded`, 429) are retried with backoff.
//! Incremental answers list deleted and cancelled entries with status `cancelled` (often with
//! nothing but their id): those are the objects deleted.
//!
//! The access token is read from its secret source on every sync (until the OAuth2 work of the
//! operations issue refreshes it): a 401 stops the calendar as an authentication failure.

use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use google_calendar3::api::{Event, EventDateTime};
use google_calendar3::{CalendarHub, Error as GoogleError, hyper_rustls, hyper_util};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::ics::{Attendee, EventInstance, PartStat, Window, instance_key, localize};
use super::{CalendarChanges, CalendarIngestor, CalendarObject, CalendarStats};
use crate::address;
use crate::config::SecretSource;
use crate::sources::{Backoff, SourceError};
use crate::store::SyncCursor;

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A Google calendar: its id and where its token and API are.
pub struct GoogleCalendar {
    pub calendar_id: String,
    pub token: SecretSource,
    /// `https://www.googleapis.com/` unless pointed at a local fake.
    pub root_url: Option<String>,
    /// How long to wait after a rate-limit answer at first (doubling, with jitter).
    pub rate_limit_backoff: Duration,
}

/// Where the last sync got to, kept in the sync cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct GoogleCursor {
    sync_token: Option<String>,
    window_start: Option<String>,
}

/// The result of one `events.list` page, or why there is none.
enum PageError {
    /// 410 Gone: the sync token is no longer valid.
    Gone,
    RateLimited(String),
    Source(SourceError),
}

fn connector() -> Result<Connector, SourceError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| SourceError::Transient(anyhow!("no root certificates for Google: {e}")))?;
    Ok(builder.https_or_http().enable_http1().enable_http2().build())
}

fn classify(e: GoogleError) -> PageError {
    let from_status = |code: u16, reason: &str, message: String| match code {
        410 => PageError::Gone,
        429 => PageError::RateLimited(message),
        403 if reason.contains("RateLimitExceeded") || reason.contains("rateLimitExceeded") => {
            PageError::RateLimited(message)
        }
        401 => PageError::Source(SourceError::Auth(format!("Google refused the access token: {message}"))),
        _ => PageError::Source(SourceError::Transient(anyhow!(
            "Google Calendar answered {code}: {message}"
        ))),
    };
    match e {
        GoogleError::BadRequest(json) => {
            let code = json["error"]["code"].as_u64().unwrap_or(400) as u16;
            let reason = json["error"]["errors"][0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let message = json["error"]["message"].as_str().unwrap_or("no message").to_owned();
            from_status(code, &reason, message)
        }
        GoogleError::Failure(resp) => {
            let code = resp.status().as_u16();
            from_status(code, "", format!("HTTP {code}"))
        }
        other => PageError::Source(SourceError::Transient(anyhow!(
            "Google Calendar request failed: {other}"
        ))),
    }
}

fn when(t: &EventDateTime, tz: chrono_tz::Tz) -> Option<(DateTime<Utc>, bool, chrono::NaiveDate)> {
    if let Some(dt) = t.date_time {
        return Some((dt, false, dt.date_naive()));
    }
    let d = t.date?;
    let zone = t.time_zone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(tz);
    Some((localize(zone, d.and_hms_opt(0, 0, 0)?), true, d))
}

/// One entry of `events.list` as an occurrence (`None` for a cancelled or unreadable one).
fn to_instance(e: &Event, tz: chrono_tz::Tz) -> Option<EventInstance> {
    let (start, all_day, _) = when(e.start.as_ref()?, tz)?;
    let (end, _, _) = e
        .end
        .as_ref()
        .and_then(|t| when(t, tz))
        .unwrap_or((start, all_day, start.date_naive()));
    let instance = match (&e.recurring_event_id, &e.original_start_time) {
        (Some(_), Some(orig)) => {
            let (o, day, date) = when(orig, tz)?;
            instance_key(o, day, date)
        }
        _ => String::new(),
    };
    let attendees = e
        .attendees
        .iter()
        .flatten()
        .filter_map(|a| {
            let email = address::normalize(a.email.as_deref()?).ok()?;
            let partstat = match a.response_status.as_deref() {
                Some("accepted") => PartStat::Accepted,
                Some("declined") => PartStat::Declined,
                Some("tentative") => PartStat::Tentative,
                Some("needsAction") | None => PartStat::NeedsAction,
                Some(_) => PartStat::Other,
            };
            Some(Attendee { email, partstat })
        })
        .collect();
    Some(EventInstance {
        uid: e
            .i_cal_uid
            .clone()
            .or_else(|| e.recurring_event_id.clone())
            .or_else(|| e.id.clone())?,
        instance,
        start,
        end: end.max(start),
        all_day,
        summary: e.summary.clone(),
        cancelled: e.status.as_deref() == Some("cancelled"),
        organizer: e
            .organizer
            .as_ref()
            .and_then(|o| o.email.as_deref())
            .and_then(|a| address::normalize(a).ok()),
        attendees,
        created: e.created,
    })
}

impl GoogleCalendar {
    fn hub(&self) -> Result<CalendarHub<Connector>, SourceError> {
        let token = self.token.read().map_err(|e| SourceError::Auth(format!("{e:#}")))?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector()?);
        let mut hub = CalendarHub::new(client, token.expose().to_owned());
        if let Some(root) = &self.root_url {
            let root = if root.ends_with('/') {
                root.clone()
            } else {
                format!("{root}/")
            };
            hub.base_url(format!("{root}calendar/v3/"));
            hub.root_url(root);
        }
        Ok(hub)
    }

    /// Lists every page of a full (`sync_token` None) or incremental sync; returns the entries
    /// and the next sync token.
    async fn list_all(
        &self,
        hub: &CalendarHub<Connector>,
        window: &Window,
        sync_token: Option<&str>,
    ) -> Result<(Vec<Event>, Option<String>), PageError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        let mut backoff = Backoff::new(self.rate_limit_backoff, Duration::from_secs(60));
        let mut limited = 0;
        loop {
            let mut call = hub
                .events()
                .list(&self.calendar_id)
                .single_events(true)
                .max_results(250);
            call = match sync_token {
                // Google refuses time bounds together with a sync token.
                Some(t) => call.sync_token(t),
                None => call.time_min(window.start).time_max(window.end),
            };
            if let Some(p) = &page {
                call = call.page_token(p);
            }
            match call.doit().await {
                Ok((_, events)) => {
                    limited = 0;
                    backoff.reset();
                    out.extend(events.items.unwrap_or_default());
                    match events.next_page_token {
                        Some(p) => page = Some(p),
                        None => return Ok((out, events.next_sync_token)),
                    }
                }
                Err(e) => match classify(e) {
                    PageError::RateLimited(m) if limited < 6 => {
                        limited += 1;
                        let d = backoff.next_delay();
                        warn!(calendar = %self.calendar_id, retry_in = ?d, "Google rate limit: {m}");
                        tokio::time::sleep(d).await;
                    }
                    other => return Err(other),
                },
            }
        }
    }
}

/// `rapport doctor`: asks for one event, stores nothing; a refused token is an auth error.
pub async fn probe(cal: &GoogleCalendar) -> Result<String, SourceError> {
    let hub = cal.hub()?;
    match hub
        .events()
        .list(&cal.calendar_id)
        .single_events(true)
        .max_results(1)
        .doit()
        .await
    {
        Ok(_) => Ok("the Calendar API answers and accepts the token".into()),
        Err(e) => match classify(e) {
            PageError::Source(e) => Err(e),
            PageError::Gone => Err(SourceError::Transient(anyhow!("Google answered 410 Gone"))),
            PageError::RateLimited(m) => Err(SourceError::Transient(anyhow!("Google rate limit: {m}"))),
        },
    }
}

/// Syncs a Google calendar once: incrementally with the stored token, fully on the first sync,
/// when the window moved to a new day, or when Google answers 410 Gone.
pub async fn sync_google(
    cal: &GoogleCalendar,
    ingestor: &CalendarIngestor,
    window: &Window,
) -> Result<CalendarStats, SourceError> {
    let scope = "events";
    let before: GoogleCursor = ingestor
        .store
        .cursor(&ingestor.calendar_id, scope)
        .await?
        .and_then(|c| c.token)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let window_start = window.start.date_naive().to_string();
    let token = before
        .sync_token
        .as_deref()
        .filter(|_| before.window_start.as_deref() == Some(window_start.as_str()));
    let hub = cal.hub()?;
    let (events, next, complete) = match cal.list_all(&hub, window, token).await {
        Ok((ev, next)) => (ev, next, token.is_none()),
        Err(PageError::Gone) => {
            warn!(calendar = %ingestor.calendar_id, "Google invalidated the sync token (410); full resync");
            match cal.list_all(&hub, window, None).await {
                Ok((ev, next)) => (ev, next, true),
                Err(PageError::Source(e)) => return Err(e),
                Err(PageError::Gone) => {
                    return Err(SourceError::Transient(anyhow!("Google answered 410 to a full sync")));
                }
                Err(PageError::RateLimited(m)) => {
                    return Err(SourceError::Transient(anyhow!("Google rate limit persists: {m}")));
                }
            }
        }
        Err(PageError::Source(e)) => return Err(e),
        Err(PageError::RateLimited(m)) => {
            return Err(SourceError::Transient(anyhow!("Google rate limit persists: {m}")));
        }
    };
    let mut changes = CalendarChanges {
        complete,
        ..Default::default()
    };
    for e in &events {
        let Some(id) = e.id.clone() else { continue };
        if e.status.as_deref() == Some("cancelled") {
            changes.deleted.push(id);
            continue;
        }
        match to_instance(e, ingestor.rep_time_zone) {
            Some(inst) => {
                let instances = if window.overlaps(inst.start, inst.end) {
                    vec![inst]
                } else {
                    Vec::new()
                };
                changes.updated.push(CalendarObject {
                    href: id,
                    etag: e.etag.clone(),
                    instances,
                });
            }
            None => ingestor.report_problems(&id, &["an event without a usable start skipped".to_owned()]),
        }
    }
    debug!(calendar = %ingestor.calendar_id, entries = events.len(), complete, "Google events read");
    let after = GoogleCursor {
        sync_token: next,
        window_start: Some(window_start),
    };
    let cursor = SyncCursor {
        source_id: ingestor.calendar_id.clone(),
        scope: scope.into(),
        token: serde_json::to_string(&after).ok(),
        ..Default::default()
    };
    Ok(ingestor.apply(&changes, window, Some(&cursor)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_keys_match_the_ics_ones() {
        let e: Event = serde_json::from_value(serde_json::json!({
            "id": "abc_20261103T090000Z",
            "iCalUID": "abc@google.com",
            "status": "confirmed",
            "recurringEventId": "abc",
            "originalStartTime": {"dateTime": "2026-11-03T10:00:00+01:00"},
            "start": {"dateTime": "2026-11-03T11:00:00+01:00"},
            "end": {"dateTime": "2026-11-03T12:00:00+01:00"},
            "attendees": [{"email": "Sara@Acme.example", "responseStatus": "accepted"}],
            "organizer": {"email": "alice@example.com"}
        }))
        .unwrap();
        let i = to_instance(&e, chrono_tz::UTC).unwrap();
        assert_eq!(i.uid, "abc@google.com");
        assert_eq!(i.instance, "20261103T090000Z");
        assert_eq!(i.start.to_rfc3339(), "2026-11-03T10:00:00+00:00");
        assert_eq!(i.attendees[0].email, "sara@acme.example");
        assert_eq!(i.attendees[0].partstat, PartStat::Accepted);
    }
}
