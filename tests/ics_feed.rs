//! An ICS feed over HTTP: Radicale serves a calendar collection as one iCalendar file on GET,
//! with an ETag, which is what the "secret address" feeds of Google and Outlook look like to
//! Rapport. On SQLite and PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::TestDb;
use common::caldav::{DavKind, DavServer};
use rapport::config::Config;
use rapport::daemon::calendar_tasks;
use rapport::sources::mail::MatchRules;

fn vcal(start: &str, end: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//rapport tests//EN\r\nBEGIN:VEVENT\r\nUID:feed-1\r\nDTSTAMP:20261101T000000Z\r\n\
         DTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Demo\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:sara@acme.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

async fn counts(db: &TestDb) -> BTreeMap<String, i64> {
    db.store
        .count_by_rep_and_kind(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.count))
        .collect()
}

store_tests!(feed_is_polled_with_its_etag);

async fn feed_is_polled_with_its_etag(db: TestDb) {
    let dav = DavServer::start(DavKind::Radicale).await;
    dav.put("demo.ics", &vcal("20261105T100000Z", "20261105T110000Z")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("leads.csv"),
        "email,name,company,owner\nsara@acme.example,Sara Lind,Acme,alice\n",
    )
    .unwrap();
    // The feed's address carries its secret (here Basic credentials in the URL).
    let url = dav
        .base_url
        .replace("http://", "http://alice:feed-secret@")
        .trim_end_matches('/')
        .to_string()
        + &dav.calendar_path;
    let yaml = common::config_yaml(
        &db.url,
        &format!("calendars:\n  - id: alice-feed\n    kind: ics\n    url: \"{url}\"\n"),
    )
    .replace(
        "    time_zone: Europe/Stockholm\n",
        "    time_zone: Europe/Stockholm\n    calendars: [alice-feed]\n",
    );
    let path = dir.path().join("rapport.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    db.store.sync_reps(&config).await.unwrap();
    rapport::leads::import_file(&db.store, &config, &dir.path().join("leads.csv"))
        .await
        .unwrap();
    let rules = Arc::new(MatchRules::new(&config, db.store.load_lead_index().await.unwrap()));
    let task = calendar_tasks(&config, &db.store, &rules).unwrap().remove(0);

    let first = task.sync_once().await.unwrap();
    assert_eq!(first.objects, 1);
    assert_eq!(counts(&db).await, BTreeMap::from([("meeting_booked".to_string(), 1)]));
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
        counts(&db).await,
        BTreeMap::from([
            ("meeting_booked".to_string(), 1),
            ("meeting_rescheduled".to_string(), 1)
        ])
    );

    // Gone from the feed: cancelled.
    dav.delete("demo.ics").await;
    task.sync_once().await.unwrap();
    assert_eq!(counts(&db).await.get("meeting_cancelled"), Some(&1));
}
