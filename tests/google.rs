//! Meeting capture from Google Calendar through google-calendar3, against a local fake of
//! `events.list` that follows Google's documented behaviour: pages (`pageToken` /
//! `nextPageToken`), `nextSyncToken` only on the last page, incremental sync by `syncToken`
//! (changed and cancelled entries; time bounds refused with a token), 410 Gone for a token it
//! no longer accepts, and 429 / 403 `rateLimitExceeded`. On SQLite and PostgreSQL.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::TestDb;
use rapport::config::{CalendarSource, Config};
use rapport::daemon::probe_calendar;
use rapport::sources::calendar::CalendarIngestor;
use rapport::sources::calendar::google::{GoogleCalendar, sync_google};
use serde_json::{Value, json};

/// The fake's calendar: entries with the version they were last changed in.
#[derive(Default)]
struct Fake {
    events: BTreeMap<String, (u64, Value)>,
    version: u64,
    /// Tokens up to this version answer 410 Gone.
    invalid_below: u64,
    /// The next this-many requests are refused as rate-limited.
    rate_limited: u32,
    /// Every request's query, in order.
    log: Vec<HashMap<String, String>>,
    page_size: usize,
}

type Shared = Arc<Mutex<Fake>>;

fn google_error(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

fn overlaps(e: &Value, min: Option<&String>, max: Option<&String>) -> bool {
    let start = e["start"]["dateTime"].as_str().unwrap_or_default().to_string();
    let end = e["end"]["dateTime"].as_str().unwrap_or_default().to_string();
    min.is_none_or(|m| end > *m) && max.is_none_or(|m| start < *m)
}

async fn list(
    State(fake): State<Shared>,
    Path(calendar): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut f = fake.lock().unwrap();
    f.log.push(q.clone());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer test-token") {
        return google_error(401, "authError", "Invalid Credentials");
    }
    if calendar != "primary" {
        return google_error(404, "notFound", "Not Found");
    }
    if f.rate_limited > 0 {
        f.rate_limited -= 1;
        return if f.rate_limited % 2 == 0 {
            google_error(429, "rateLimitExceeded", "Rate Limit Exceeded")
        } else {
            google_error(403, "rateLimitExceeded", "Rate Limit Exceeded")
        };
    }
    if q.get("singleEvents").map(String::as_str) != Some("true") {
        return google_error(400, "badRequest", "this fake only expands series (singleEvents=true)");
    }
    // The snapshot a page belongs to travels in the page token: "<since>:<offset>".
    let (since, offset, incremental) = match (q.get("pageToken"), q.get("syncToken")) {
        (Some(p), sync) => {
            let (a, b) = p.split_once(':').unwrap();
            (a.parse::<u64>().unwrap(), b.parse::<usize>().unwrap(), sync.is_some())
        }
        (None, Some(t)) => {
            if q.contains_key("timeMin") || q.contains_key("timeMax") {
                return google_error(400, "invalid", "syncToken cannot be combined with timeMin or timeMax");
            }
            let v: u64 = t.trim_start_matches('v').parse().unwrap_or(0);
            if v < f.invalid_below {
                return google_error(
                    410,
                    "fullSyncRequired",
                    "Sync token is no longer valid, a full sync is required.",
                );
            }
            (v, 0, true)
        }
        (None, None) => (0, 0, false),
    };
    let items: Vec<Value> = f
        .events
        .values()
        .filter(|(v, e)| {
            if incremental {
                *v > since
            } else {
                e["status"] != "cancelled" && overlaps(e, q.get("timeMin"), q.get("timeMax"))
            }
        })
        .map(|(_, e)| {
            if e["status"] == "cancelled" {
                // Deleted entries come back with little more than their id.
                json!({"kind": "calendar#event", "id": e["id"], "status": "cancelled"})
            } else {
                e.clone()
            }
        })
        .collect();
    let page: Vec<Value> = items.iter().skip(offset).take(f.page_size).cloned().collect();
    let mut body = json!({"kind": "calendar#events", "summary": "alice@example.com", "items": page});
    if offset + f.page_size < items.len() {
        body["nextPageToken"] = json!(format!("{since}:{}", offset + f.page_size));
    } else {
        body["nextSyncToken"] = json!(format!("v{}", f.version));
    }
    Json(body).into_response()
}

impl Fake {
    fn put(&mut self, e: Value) {
        self.version += 1;
        let id = e["id"].as_str().unwrap().to_string();
        self.events.insert(id, (self.version, e));
    }

    fn cancel(&mut self, id: &str) {
        self.version += 1;
        let v = self.version;
        let entry = self.events.get_mut(id).unwrap();
        entry.0 = v;
        entry.1["status"] = json!("cancelled");
    }
}

fn event(id: &str, start: &str, end: &str) -> Value {
    json!({
        "kind": "calendar#event", "id": id, "iCalUID": format!("{id}@google.com"), "status": "confirmed",
        "etag": format!("\"{id}-1\""), "summary": format!("Meeting {id}"), "created": "2026-10-30T08:00:00Z",
        "start": {"dateTime": start}, "end": {"dateTime": end},
        "organizer": {"email": "alice@example.com", "self": true},
        "attendees": [
            {"email": "alice@example.com", "self": true, "responseStatus": "accepted"},
            {"email": "sara@acme.example", "responseStatus": "accepted"}
        ]
    })
}

/// An occurrence of a series, as `singleEvents=true` lists it.
fn occurrence(series: &str, start: &str, end: &str) -> Value {
    let key = start.replace(['-', ':'], "");
    let mut e = event(&format!("{series}_{key}"), start, end);
    e["iCalUID"] = json!(format!("{series}@google.com"));
    e["recurringEventId"] = json!(series);
    e["originalStartTime"] = json!({"dateTime": start});
    e
}

struct Setup {
    fake: Shared,
    ingestor: Arc<CalendarIngestor>,
    cal: GoogleCalendar,
    config: Config,
    _server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn setup(db: &TestDb) -> Setup {
    let fake: Shared = Arc::new(Mutex::new(Fake {
        page_size: 2,
        ..Default::default()
    }));
    let app = Router::new()
        .route("/calendar/v3/calendars/{calendar}/events", get(list))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "test-token\n").unwrap();
    let config = common::calendar_config(
        db,
        dir.path(),
        "alice-google",
        &format!(
            "  - id: alice-google\n    kind: google\n    token_file: token\n    base_url: http://127.0.0.1:{port}/\n"
        ),
    )
    .await;
    let task = common::first_calendar_task(&config, &db.store).await;
    let CalendarSource::Google {
        calendar_id,
        token,
        base_url,
    } = &config.calendars[0].source
    else {
        panic!("a google calendar")
    };
    let cal = GoogleCalendar {
        calendar_id: calendar_id.clone(),
        token: token.clone(),
        root_url: base_url.clone(),
        rate_limit_backoff: Duration::from_millis(20),
    };
    Setup {
        fake,
        ingestor: task.ingestor.clone(),
        cal,
        config,
        _server: server,
        _dir: dir,
    }
}

impl Setup {
    async fn sync(&self) {
        let window = rapport::sources::calendar::ics::Window::around(self.ingestor.now(), 30, 90);
        sync_google(&self.cal, &self.ingestor, &window)
            .await
            .unwrap_or_else(|e| panic!("google sync failed: {e:#}"));
    }

    fn take_log(&self) -> Vec<HashMap<String, String>> {
        std::mem::take(&mut self.fake.lock().unwrap().log)
    }
}

store_tests!(google_paging_incremental_and_410);

async fn google_paging_incremental_and_410(db: TestDb) {
    let s = setup(&db).await;
    assert_eq!(s.config.calendars.len(), 1);
    {
        let mut f = s.fake.lock().unwrap();
        // now = 2026-11-02 09:00Z: five meetings ahead, one long past (outside the window).
        f.put(event("a1", "2026-11-04T10:00:00Z", "2026-11-04T11:00:00Z"));
        f.put(event("a2", "2026-11-05T10:00:00Z", "2026-11-05T11:00:00Z"));
        f.put(event("a3", "2026-11-06T10:00:00Z", "2026-11-06T11:00:00Z"));
        f.put(occurrence("wk", "2026-11-09T14:00:00Z", "2026-11-09T14:30:00Z"));
        f.put(occurrence("wk", "2026-11-16T14:00:00Z", "2026-11-16T14:30:00Z"));
        f.put(event("old", "2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z"));
    }

    // Initial sync: three pages of two, the sync token from the last one.
    s.sync().await;
    let log = s.take_log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log.iter()
            .all(|q| !q.contains_key("syncToken") && q.contains_key("timeMin"))
    );
    assert_eq!(log[1]["pageToken"], "0:2");
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        common::kinds(&[("meeting_booked", 5)])
    );
    let recent = db.store.recent_activities(50).await.unwrap();
    assert!(
        recent.iter().any(|a| a.source_id == "wk@google.com 20261116T140000Z"),
        "{recent:?}"
    );

    // Incremental: one moved, one cancelled, one new.
    {
        let mut f = s.fake.lock().unwrap();
        f.put(event("a1", "2026-11-04T13:00:00Z", "2026-11-04T14:00:00Z"));
        f.cancel("a2");
        f.put(event("a4", "2026-11-10T10:00:00Z", "2026-11-10T11:00:00Z"));
    }
    s.sync().await;
    let log = s.take_log();
    assert!(
        !log.is_empty()
            && log
                .iter()
                .all(|q| q.contains_key("syncToken") && !q.contains_key("timeMin")),
        "{log:?}"
    );
    let after_incremental = common::kinds(&[
        ("meeting_booked", 6),
        ("meeting_rescheduled", 1),
        ("meeting_cancelled", 1),
    ]);
    assert_eq!(common::counts_by_kind(&db.store).await, after_incremental);

    // Nothing new: an empty incremental page.
    s.sync().await;
    assert_eq!(s.take_log().len(), 1);
    assert_eq!(common::counts_by_kind(&db.store).await, after_incremental);

    // Google drops the token: 410, then a full resync that duplicates nothing.
    s.fake.lock().unwrap().invalid_below = u64::MAX;
    s.sync().await;
    s.fake.lock().unwrap().invalid_below = 0;
    let log = s.take_log();
    assert!(log[0].contains_key("syncToken"), "{log:?}");
    assert!(log[1..].iter().all(|q| !q.contains_key("syncToken")), "{log:?}");
    assert_eq!(log.len(), 1 + 3, "the 410, then three pages: {log:?}");
    assert_eq!(common::counts_by_kind(&db.store).await, after_incremental);

    // Rate limited twice (429, then 403 rateLimitExceeded): retried with backoff.
    {
        let mut f = s.fake.lock().unwrap();
        f.rate_limited = 2;
        f.put(event("a5", "2026-11-11T10:00:00Z", "2026-11-11T11:00:00Z"));
    }
    s.sync().await;
    assert_eq!(s.take_log().len(), 3, "two refusals and the answer");
    let mut want = after_incremental.clone();
    want.insert("meeting_booked".into(), 7);
    assert_eq!(common::counts_by_kind(&db.store).await, want);

    // The meetings end: held, once.
    db.clock
        .set(chrono::Utc.with_ymd_and_hms(2026, 11, 12, 9, 0, 0).unwrap());
    s.sync().await;
    s.sync().await;
    // a1 (moved), a3, wk 09, a4, a5 are over; a2 was cancelled; wk 16 is still ahead.
    want.insert("meeting_held".into(), 5);
    assert_eq!(common::counts_by_kind(&db.store).await, want);
}

use chrono::TimeZone;

store_tests!(google_refused_token_is_an_auth_failure);

async fn google_refused_token_is_an_auth_failure(db: TestDb) {
    let s = setup(&db).await;
    // `rapport doctor`'s probe: one list call, accepted with the right token.
    let cal = &s.config.calendars[0];
    let tz = s.config.reps[0].time_zone;
    let found = probe_calendar(cal, tz, s.ingestor.now()).await.unwrap();
    assert!(found.contains("accepts the token"), "{found}");
    std::fs::write(s._dir.path().join("token"), "wrong-token\n").unwrap();
    let window = rapport::sources::calendar::ics::Window::around(s.ingestor.now(), 30, 90);
    let err = sync_google(&s.cal, &s.ingestor, &window).await.unwrap_err();
    assert!(err.is_auth(), "{err:#}");
    assert!(!format!("{err:#}").contains("wrong-token"), "the token is never shown");
    let err = probe_calendar(cal, tz, s.ingestor.now()).await.unwrap_err();
    assert!(err.is_auth(), "the doctor sees the refusal too: {err:#}");
    assert_eq!(common::counts_by_kind(&db.store).await, BTreeMap::new());
}
