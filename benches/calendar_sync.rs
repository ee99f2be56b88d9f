//! Calendar sync throughput against a real Radicale on loopback: a calendar of 10,000 events
//! (9,900 single meetings and 100 weekly series of 10), synced by Rapport into SQLite and
//! PostgreSQL, as a ratio to a plain client measured in the same run that downloads the same
//! calendar data with the same requests (`sync-collection` for the listing, `calendar-multiget`
//! in batches of 100) and throws it away. Run with `scripts/bench calendar_sync`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use common::caldav::{DavKind, DavServer};
use rapport::clock::SystemClock;
use rapport::config::Config;
use rapport::daemon::calendar_tasks;
use rapport::sources::mail::MatchRules;
use rapport::store::{LeadColumns, NewLead, Store};

const SINGLE: usize = 9_900;
const SERIES: usize = 100;
const EVENTS: usize = SINGLE + SERIES;
const LEADS: usize = 1_000;

fn calendar() -> String {
    let now = Utc::now();
    let mut out = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//rapport bench//EN\r\n");
    for i in 0..EVENTS {
        // Spread from 20 days back to 60 days ahead, on the quarter hour.
        let start = now - Duration::days(20) + Duration::minutes(15 * ((i * 7) % (80 * 96)) as i64);
        let start = start.format("%Y%m%dT%H%M00Z");
        let lead = i % LEADS;
        let rule = if i >= SINGLE {
            "RRULE:FREQ=WEEKLY;COUNT=10\r\n"
        } else {
            ""
        };
        out.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:bench-{i}@example.com\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:{start}\r\nDURATION:PT30M\r\n\
             SUMMARY:Meeting {i}\r\n{rule}ORGANIZER:mailto:alice@example.com\r\n\
             ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
             ATTENDEE;PARTSTAT=ACCEPTED:mailto:lead{lead}@company{}.example\r\nEND:VEVENT\r\n",
            lead % 50
        ));
    }
    out.push_str("END:VCALENDAR\r\n");
    out
}

/// The same requests Rapport makes, the answers thrown away. Returns events per second.
async fn plain_download(dav: &DavServer) -> f64 {
    let start = Instant::now();
    let url = dav.calendar_url();
    let listing = dav
        .raw("REPORT", &url)
        .header("Content-Type", "application/xml; charset=utf-8")
        .body(r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc = roxmltree::Document::parse(&listing).unwrap();
    let hrefs: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name(("DAV:", "href")))
        .filter_map(|n| n.text())
        .filter(|h| h.ends_with(".ics"))
        .collect();
    assert_eq!(hrefs.len(), EVENTS, "{}", &listing[..listing.len().min(500)]);
    let mut bytes = 0;
    for chunk in hrefs.chunks(100) {
        let list: String = chunk.iter().map(|h| format!("<d:href>{h}</d:href>")).collect();
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>{list}</c:calendar-multiget>"#
        );
        let text = dav
            .raw("REPORT", &url)
            .header("Depth", "1")
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        bytes += text.len();
    }
    assert!(bytes > EVENTS * 200);
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

async fn rapport_sync(db_url: &str, dav: &DavServer, dir: &std::path::Path) -> f64 {
    std::fs::write(dir.join("pw"), "pw\n").unwrap();
    let yaml = format!(
        "database: {{url: \"{db_url}\"}}\ninternal_domains: [example.com]\nreps:\n  - {{id: alice, name: A, email: alice@example.com, calendars: [alice-dav]}}\n\
         calendars:\n  - {{id: alice-dav, kind: caldav, url: \"{}\", username: {}, password_file: \"{}\", past_days: 30, future_days: 90}}\n",
        dav.base_url,
        dav.username,
        dir.join("pw").display()
    );
    let c = Config::from_str(std::path::Path::new("/tmp/bench.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"));
    let store = Store::connect(db_url, 4, Arc::new(SystemClock)).await.unwrap();
    store.migrate().await.unwrap();
    store.sync_reps(&c).await.unwrap();
    let leads: Vec<NewLead> = (0..LEADS)
        .map(|l| NewLead {
            email: format!("lead{l}@company{}.example", l % 50),
            name: None,
            company_name: None,
            company_domain: Some(format!("company{}.example", l % 50)),
            owner_rep: Some("alice".into()),
            time_zone: None,
            status: None,
            attributes: Default::default(),
        })
        .collect();
    store.upsert_leads(&leads, LeadColumns::all()).await.unwrap();
    let rules = Arc::new(MatchRules::new(&c, store.load_lead_index().await.unwrap()));
    let task = calendar_tasks(&c, &store, &rules).unwrap().remove(0);
    let start = Instant::now();
    let stats = task.sync_once().await.unwrap_or_else(|e| panic!("{e:#}"));
    let rate = EVENTS as f64 / start.elapsed().as_secs_f64();
    assert_eq!(stats.objects, EVENTS);
    assert!(stats.instances > EVENTS, "series expanded: {stats:?}");
    assert!(stats.activities >= EVENTS, "{stats:?}");
    store.close().await;
    rate
}

#[tokio::main]
async fn main() {
    let dav = DavServer::start(DavKind::Radicale).await;
    let t = Instant::now();
    dav.put_collection(calendar()).await;
    println!(
        "Radicale: {EVENTS} events uploaded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();

    let cold = plain_download(&dav).await;
    println!("plain client, first download (cold): {cold:.0} events/s");
    println!("\n| backend | plain download | rapport sync | ratio |\n|---|---|---|---|");

    let raw = plain_download(&dav).await;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let r = rapport_sync(&sqlite_url, &dav, dir.path()).await;
    println!("| SQLite | {raw:.0} events/s | {r:.0} events/s | {:.2} |", r / raw);

    // A schema of its own; leftovers are dropped by the next scripts/test or scripts/bench run.
    let pg_url = common::pg_schema_url().await;
    let raw = plain_download(&dav).await;
    let r = rapport_sync(&pg_url, &dav, dir.path()).await;
    println!("| PostgreSQL | {raw:.0} events/s | {r:.0} events/s | {:.2} |", r / raw);
}
