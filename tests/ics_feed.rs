//! An ICS feed over HTTP: Radicale serves a calendar collection as one iCalendar file on GET,
//! with an ETag, which is what the "secret address" feeds of Google and Outlook look like to
//! Rapport. On SQLite and PostgreSQL.

mod common;

use std::collections::BTreeMap;

use common::TestDb;
use common::caldav::{DavKind, DavServer};

fn vcal(start: &str, end: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//rapport tests//EN\r\nBEGIN:VEVENT\r\nUID:feed-1\r\nDTSTAMP:20261101T000000Z\r\n\
         DTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Demo\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:sara@acme.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

store_tests!(feed_is_polled_with_its_etag);

async fn feed_is_polled_with_its_etag(db: TestDb) {
    let dav = DavServer::start(DavKind::Radicale).await;
    dav.put("demo.ics", &vcal("20261105T100000Z", "20261105T110000Z")).await;
    let dir = tempfile::tempdir().unwrap();
    // The feed's address carries its secret (here Basic credentials in the URL).
    let url = dav
        .base_url
        .replace("http://", "http://alice:feed-secret@")
        .trim_end_matches('/')
        .to_string()
        + &dav.calendar_path;
    let config = common::calendar_config(
        &db,
        dir.path(),
        "alice-feed",
        &format!("  - id: alice-feed\n    kind: ics\n    url: \"{url}\"\n"),
    )
    .await;
    let task = common::first_calendar_task(&config, &db.store).await;

    let first = task.sync_once().await.unwrap();
    assert_eq!(first.objects, 1);
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        BTreeMap::from([("meeting_booked".to_string(), 1)])
    );
    let cursor = db.store.cursor("alice-feed", "feed").await.unwrap().unwrap();
    let validators: serde_json::Value = serde_json::from_str(cursor.token.as_deref().unwrap()).unwrap();
    assert!(validators["etag"].is_string(), "Radicale sends an ETag: {validators}");

    // Unchanged: nothing is parsed. (Radicale ignores If-None-Match on a collection and answers
    // 200 with the same ETag and body; a server that honours it answers 304. Both end here.)
    let again = task.sync_once().await.unwrap();
    assert_eq!(again.objects, 0, "an unchanged feed is not read again");

    // Moved: a new ETag, the whole feed again, one reschedule.
    dav.put("demo.ics", &vcal("20261106T100000Z", "20261106T110000Z")).await;
    let moved = task.sync_once().await.unwrap();
    assert_eq!(moved.objects, 1);
    assert_eq!(
        common::counts_by_kind(&db.store).await,
        BTreeMap::from([
            ("meeting_booked".to_string(), 1),
            ("meeting_rescheduled".to_string(), 1)
        ])
    );

    // Gone from the feed: cancelled.
    dav.delete("demo.ics").await;
    task.sync_once().await.unwrap();
    assert_eq!(
        common::counts_by_kind(&db.store).await.get("meeting_cancelled"),
        Some(&1)
    );
}
