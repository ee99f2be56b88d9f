//! Meeting capture against real CalDAV servers (Radicale and Xandikos, started per test), on
//! SQLite and PostgreSQL: create, move, cancel, recur with an exception; the activities are
//! exactly those expected after each step, after the meetings end, and after a restart.
//!
//! Known server quirks (what each server did in these tests, and how Rapport copes):
//!
//! | server   | quirk | handling |
//! |----------|-------|----------|
//! | Radicale 3.1 | `sync-collection` works; a stale token is refused with 403 `valid-sync-token` | one full listing takes a fresh token |
//! | Radicale 3.1 | GET of a collection (used as an ICS feed) ignores `If-None-Match` and answers 200 with the same ETag | the feed source compares ETag and body hash itself (tests/ics_feed.rs) |
//! | Xandikos 0.2.8 | `sync-collection` works; a stale token makes it answer 500 | one full listing takes a fresh token |
//! | Xandikos 0.2.8 | the principal is `/user/` whatever the login | discovery follows current-user-principal |
//!
//! Without any usable `sync-collection` Rapport compares the PROPFIND Depth 1 ETag listing
//! (after a `getctag` check); neither server here needs that path.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::TestDb;
use common::caldav::{DavKind, DavServer};
use rapport::clock::Clock;
use rapport::config::Config;
use rapport::daemon::CalendarTask;

async fn setup(db: &TestDb, dav: &DavServer, dir: &std::path::Path) -> Config {
    std::fs::write(dir.join("pw"), "secret\n").unwrap();
    let calendar = format!(
        "  - id: alice-dav\n    kind: caldav\n    url: {}\n    username: {}\n    password_file: pw\n    past_days: 30\n    future_days: 60\n",
        dav.base_url, dav.username
    );
    common::calendar_config(db, dir, "alice-dav", &calendar).await
}

/// A fresh task, as after a daemon restart.
async fn task(config: &Config, db: &TestDb) -> CalendarTask {
    common::first_calendar_task(config, &db.store).await
}

fn vcal(body: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//rapport tests//EN\r\n{body}END:VCALENDAR\r\n")
}

const PEOPLE: &str = "ORGANIZER:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:sara@acme.example\r\n";

fn single(start: &str, end: &str, extra: &str) -> String {
    vcal(&format!(
        "BEGIN:VEVENT\r\nUID:demo-1\r\nDTSTAMP:20261101T000000Z\r\nCREATED:20261101T120000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Demo\r\n{PEOPLE}{extra}END:VEVENT\r\n"
    ))
}

/// Weekly on Wednesdays 14:00Z from Nov 4 (4 times); the second moved to 15:00.
fn series(extra_master: &str, extra_overrides: &str) -> String {
    vcal(&format!(
        "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261104T140000Z\r\nDURATION:PT30M\r\n\
         RRULE:FREQ=WEEKLY;COUNT=4\r\nSUMMARY:Weekly\r\n{PEOPLE}{extra_master}END:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20261101T000000Z\r\nRECURRENCE-ID:20261111T140000Z\r\n\
         DTSTART:20261111T150000Z\r\nDURATION:PT30M\r\nSUMMARY:Weekly (moved)\r\n{PEOPLE}END:VEVENT\r\n{extra_overrides}"
    ))
}

async fn sync(t: &CalendarTask) {
    let stats = t.sync_once().await.unwrap_or_else(|e| panic!("sync failed: {e:#}"));
    t.ingestor.synced(t.kind(), &stats).await;
}

async fn lifecycle(db: TestDb, kind: DavKind) {
    let dav = DavServer::start(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let config = setup(&db, &dav, dir.path()).await;
    // now = 2026-11-02 09:00Z (the harness clock).
    let t = task(&config, &db).await;

    // Create: a single meeting, a series with an exception, and an internal meeting.
    dav.put("demo.ics", &single("20261105T100000Z", "20261105T110000Z", ""))
        .await;
    dav.put("weekly.ics", &series("", "")).await;
    dav.put(
        "internal.ics",
        &vcal("BEGIN:VEVENT\r\nUID:internal-1\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261103T100000Z\r\nDTEND:20261103T110000Z\r\nORGANIZER:mailto:alice@example.com\r\nATTENDEE:mailto:dave@example.com\r\nEND:VEVENT\r\n"),
    )
    .await;
    sync(&t).await;
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        common::kinds(&[("meeting_booked", 5)]),
        "{kind:?}: after create"
    );
    let booked = db.store.recent_activities(100).await.unwrap();
    let demo = booked.iter().find(|a| a.source_id == "demo-1").unwrap();
    assert_eq!(
        demo.occurred_at,
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
        "booked at CREATED"
    );
    assert!(
        booked.iter().any(|a| a.source_id == "weekly-1 20261111T140000Z"),
        "the moved occurrence keeps its original key"
    );
    let cursor = db.store.cursors_of("alice-dav").await.unwrap();
    assert_eq!(cursor.len(), 1, "{cursor:?}");
    let token: serde_json::Value = serde_json::from_str(cursor[0].token.as_deref().unwrap()).unwrap();
    assert!(
        token["sync_token"].is_string(),
        "{kind:?} answered sync-collection (see the quirks table): {token}"
    );

    // Nothing changed: nothing new.
    sync(&t).await;
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        common::kinds(&[("meeting_booked", 5)]),
        "{kind:?}: re-sync"
    );

    // Move the single meeting by a day.
    dav.put(
        "demo.ics",
        &single("20261106T100000Z", "20261106T110000Z", "SEQUENCE:1\r\n"),
    )
    .await;
    sync(&t).await;
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        common::kinds(&[("meeting_booked", 5), ("meeting_rescheduled", 1)]),
        "{kind:?}: after move"
    );

    // Cancel: the single meeting by STATUS, one occurrence by EXDATE, one by a cancelled override.
    dav.put(
        "demo.ics",
        &single(
            "20261106T100000Z",
            "20261106T110000Z",
            "SEQUENCE:2\r\nSTATUS:CANCELLED\r\n",
        ),
    )
    .await;
    dav.put(
        "weekly.ics",
        &series(
            "EXDATE:20261125T140000Z\r\n",
            "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20261101T000000Z\r\nRECURRENCE-ID:20261118T140000Z\r\nDTSTART:20261118T140000Z\r\nDURATION:PT30M\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n",
        ),
    )
    .await;
    sync(&t).await;
    let after_cancel = common::kinds(&[
        ("meeting_booked", 5),
        ("meeting_rescheduled", 1),
        ("meeting_cancelled", 3),
    ]);
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        after_cancel,
        "{kind:?}: after cancel"
    );

    // Time passes: the two occurrences left are held (no server change needed).
    db.clock.set(Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap());
    sync(&t).await;
    let after_held = common::kinds(&[
        ("meeting_booked", 5),
        ("meeting_rescheduled", 1),
        ("meeting_cancelled", 3),
        ("meeting_held", 2),
    ]);
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        after_held,
        "{kind:?}: after the meetings ended"
    );
    let held: Vec<_> = db
        .store
        .recent_activities(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "meeting_held")
        .map(|a| (a.source_id, a.occurred_at))
        .collect();
    assert!(
        held.contains(&(
            "weekly-1 20261111T140000Z".to_string(),
            Utc.with_ymd_and_hms(2026, 11, 11, 15, 30, 0).unwrap()
        )),
        "held at the moved occurrence's end: {held:?}"
    );

    // A sync token the server no longer knows: it refuses the report, one full listing
    // takes a fresh token, and nothing counts twice.
    let mut c = db.store.cursors_of("alice-dav").await.unwrap().remove(0);
    let mut tok: serde_json::Value = serde_json::from_str(c.token.as_deref().unwrap()).unwrap();
    let stale = format!("{}-stale", tok["sync_token"].as_str().unwrap());
    tok["sync_token"] = serde_json::json!(stale);
    c.token = Some(tok.to_string());
    let mut tx = db.store.begin().await.unwrap();
    tx.put_cursor(&c, db.clock.now()).await.unwrap();
    tx.commit().await.unwrap();
    sync(&t).await;
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        after_held,
        "{kind:?}: after a stale token"
    );
    let c = db.store.cursors_of("alice-dav").await.unwrap().remove(0);
    let tok: serde_json::Value = serde_json::from_str(c.token.as_deref().unwrap()).unwrap();
    assert!(
        tok["sync_token"].is_string() && tok["sync_token"] != stale.as_str(),
        "{tok}"
    );

    // Delete the series' object: its occurrences are over or cancelled already, so nothing.
    // Restart (a new task, the same database) and the next day: nothing counts twice.
    db.clock.advance(Duration::days(1));
    let t2 = task(&config, &db).await;
    sync(&t2).await;
    sync(&t2).await;
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        after_held,
        "{kind:?}: after a restart"
    );
    dav.delete("weekly.ics").await;
    sync(&t2).await;
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        after_held,
        "{kind:?}: deleting past meetings cancels nothing"
    );
    let health = db.store.health().await.unwrap();
    assert!(
        health.iter().any(|h| h.source_id == "alice-dav" && h.state == "ok"),
        "{health:?}"
    );
}

store_tests!(radicale_lifecycle, xandikos_lifecycle);

async fn radicale_lifecycle(db: TestDb) {
    lifecycle(db, DavKind::Radicale).await
}

async fn xandikos_lifecycle(db: TestDb) {
    lifecycle(db, DavKind::Xandikos).await
}
