//! Expansions checked against instants computed by hand (zone offsets from the tz database).

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn wide() -> Window {
    Window {
        start: utc("2026-01-01T00:00:00Z"),
        end: utc("2028-01-01T00:00:00Z"),
    }
}

fn cal(body: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n")
}

fn starts(p: &ParsedCalendar) -> Vec<String> {
    let mut v: Vec<String> = p.instances.iter().map(|i| i.start.to_rfc3339()).collect();
    v.sort();
    v
}

#[test]
fn weekly_utc_series_stays_on_utc() {
    let text = cal(
        "BEGIN:VEVENT\r\nUID:w1\r\nDTSTART:20261102T090000Z\r\nDTEND:20261102T093000Z\r\nRRULE:FREQ=WEEKLY;COUNT=4\r\nEND:VEVENT\r\n",
    );
    let p = parse_ics(&text, &wide(), chrono_tz::Europe::Stockholm);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(
        starts(&p),
        vec![
            "2026-11-02T09:00:00+00:00",
            "2026-11-09T09:00:00+00:00",
            "2026-11-16T09:00:00+00:00",
            "2026-11-23T09:00:00+00:00"
        ]
    );
    assert!(p.instances.iter().all(|i| i.end - i.start == Duration::minutes(30)));
    let keys: Vec<&str> = p.instances.iter().map(|i| i.instance.as_str()).collect();
    assert!(keys.contains(&"20261109T090000Z"), "{keys:?}");
}

#[test]
fn utc_until_is_inclusive_and_not_read_as_local_time() {
    // In Stockholm, 09:00Z is 10:00 local: reading UNTIL as local would drop the last one.
    let text = cal(
        "BEGIN:VEVENT\r\nUID:w2\r\nDTSTART;TZID=Europe/Stockholm:20261102T100000\r\nRRULE:FREQ=WEEKLY;UNTIL=20261116T090000Z\r\nEND:VEVENT\r\n",
    );
    let p = parse_ics(&text, &wide(), chrono_tz::UTC);
    assert_eq!(
        starts(&p),
        vec![
            "2026-11-02T09:00:00+00:00",
            "2026-11-09T09:00:00+00:00",
            "2026-11-16T09:00:00+00:00"
        ]
    );
}

#[test]
fn zoned_series_keeps_wall_clock_time_across_dst() {
    // Berlin leaves summer time on 2026-10-25: 10:00 local is 08:00Z before, 09:00Z after.
    let text = cal(
        "BEGIN:VEVENT\r\nUID:dst\r\nDTSTART;TZID=Europe/Berlin:20261019T100000\r\nDTEND;TZID=Europe/Berlin:20261019T110000\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\nEND:VEVENT\r\n",
    );
    let p = parse_ics(&text, &wide(), chrono_tz::UTC);
    assert_eq!(
        starts(&p),
        vec![
            "2026-10-19T08:00:00+00:00",
            "2026-10-26T09:00:00+00:00",
            "2026-11-02T09:00:00+00:00"
        ]
    );
}

#[test]
fn missing_dtend_uses_duration_or_the_defaults() {
    let text = cal(concat!(
        "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20261102T090000Z\r\nEND:VEVENT\r\n",
        "BEGIN:VEVENT\r\nUID:b\r\nDTSTART;VALUE=DATE:20261103\r\nEND:VEVENT\r\n",
        "BEGIN:VEVENT\r\nUID:c\r\nDTSTART:20261104T090000Z\r\nDURATION:PT45M\r\nEND:VEVENT\r\n",
    ));
    let p = parse_ics(&text, &wide(), chrono_tz::America::New_York);
    let by_uid: HashMap<&str, &EventInstance> = p.instances.iter().map(|i| (i.uid.as_str(), i)).collect();
    assert_eq!(by_uid["a"].end, by_uid["a"].start, "timed without DTEND: zero length");
    // All-day in the rep's zone (New York, EST): midnight to midnight local.
    assert!(by_uid["b"].all_day);
    assert_eq!(by_uid["b"].start, utc("2026-11-03T05:00:00Z"));
    assert_eq!(by_uid["b"].end, utc("2026-11-04T05:00:00Z"));
    assert_eq!(by_uid["c"].end, utc("2026-11-04T09:45:00Z"));
}

#[test]
fn exdate_and_overridden_instances() {
    // Daily 14:00 New York (EST, 19:00Z); the 3rd is excluded, the 4th moved to 16:00, the 5th
    // cancelled.
    let text = cal(concat!(
        "BEGIN:VEVENT\r\nUID:s\r\nDTSTART;TZID=America/New_York:20261102T140000\r\nDURATION:PT1H\r\n",
        "RRULE:FREQ=DAILY;COUNT=5\r\nEXDATE;TZID=America/New_York:20261103T140000\r\n",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:Sara@Acme.example\r\nORGANIZER:mailto:bob@example.com\r\nEND:VEVENT\r\n",
        "BEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID;TZID=America/New_York:20261104T140000\r\n",
        "DTSTART;TZID=America/New_York:20261104T160000\r\nDTEND;TZID=America/New_York:20261104T170000\r\nEND:VEVENT\r\n",
        "BEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID:20261105T190000Z\r\nDTSTART:20261105T190000Z\r\nDURATION:PT1H\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n",
    ));
    let p = parse_ics(&text, &wide(), chrono_tz::UTC);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(
        starts(&p),
        vec![
            "2026-11-02T19:00:00+00:00",
            "2026-11-04T21:00:00+00:00",
            "2026-11-05T19:00:00+00:00",
            "2026-11-06T19:00:00+00:00"
        ]
    );
    let moved = p.instances.iter().find(|i| i.instance == "20261104T190000Z").unwrap();
    assert_eq!(moved.start, utc("2026-11-04T21:00:00Z"), "keyed by its original start");
    assert_eq!(
        moved.attendees[0].email, "sara@acme.example",
        "inherits the series' attendees"
    );
    let cancelled = p.instances.iter().find(|i| i.instance == "20261105T190000Z").unwrap();
    assert!(cancelled.cancelled);
    assert_eq!(p.instances.iter().filter(|i| i.cancelled).count(), 1);
}

#[test]
fn monthly_by_day_and_rdate() {
    let text = cal(
        "BEGIN:VEVENT\r\nUID:m\r\nDTSTART:20261110T100000Z\r\nRRULE:FREQ=MONTHLY;BYDAY=2TU;COUNT=3\r\nRDATE:20261201T100000Z\r\nEND:VEVENT\r\n",
    );
    let p = parse_ics(&text, &wide(), chrono_tz::UTC);
    assert_eq!(
        starts(&p),
        vec![
            "2026-11-10T10:00:00+00:00",
            "2026-12-01T10:00:00+00:00",
            "2026-12-08T10:00:00+00:00",
            "2027-01-12T10:00:00+00:00"
        ]
    );
}

#[test]
fn endless_series_is_cut_to_the_window() {
    let text = cal("BEGIN:VEVENT\r\nUID:d\r\nDTSTART:20200106T080000Z\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\nEND:VEVENT\r\n");
    let w = Window {
        start: utc("2026-11-01T00:00:00Z"),
        end: utc("2026-11-30T00:00:00Z"),
    };
    let p = parse_ics(&text, &w, chrono_tz::UTC);
    assert_eq!(
        starts(&p),
        vec![
            "2026-11-02T08:00:00+00:00",
            "2026-11-09T08:00:00+00:00",
            "2026-11-16T08:00:00+00:00",
            "2026-11-23T08:00:00+00:00"
        ]
    );
}

#[test]
fn broken_items_are_reported_and_the_rest_is_read() {
    let text = format!(
        "\u{feff}{}",
        cal(concat!(
            "BEGIN:VEVENT\r\nUID:bad-tz\r\nDTSTART;TZID=Mars/Olympus:20261102T090000\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nSUMMARY:no uid\r\nDTSTART:20261102T090000Z\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:no-start\r\nSUMMARY:x\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:dup\r\nSEQUENCE:1\r\nDTSTART:20261102T090000Z\r\nSUMMARY:old\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:dup\r\nSEQUENCE:2\r\nDTSTART:20261102T100000Z\r\nSUMMARY:new\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:folded\r\nDTSTART:20261103T090000Z\r\nSUMMARY:A long\r\n  folded title\r\n",
            "ATTENDEE;CN=\"Holm, Nina\";PARTSTAT=DECLINED:mailto:nina@gmail.com\r\nEND:VEVENT\r\n",
        ))
    );
    let p = parse_ics(&text, &wide(), chrono_tz::UTC);
    assert_eq!(p.problems.len(), 4, "{:?}", p.problems);
    assert!(
        p.problems.iter().any(|m| m.contains("Mars/Olympus")),
        "{:?}",
        p.problems
    );
    let uids: Vec<&str> = p.instances.iter().map(|i| i.uid.as_str()).collect();
    assert_eq!(uids.len(), 2, "{uids:?}");
    let dup = p.instances.iter().find(|i| i.uid == "dup").unwrap();
    assert_eq!(dup.summary.as_deref(), Some("new"));
    let folded = p.instances.iter().find(|i| i.uid == "folded").unwrap();
    assert_eq!(folded.summary.as_deref(), Some("A long folded title"));
    assert_eq!(folded.attendees[0].partstat, PartStat::Declined);
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "BEGIN:VCALENDAR\r\n",
        "BEGIN:VEVENT\r\nUID:x\r\nEND:VCALENDAR\r\n",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:2026\r\nRRULE:FREQ=NEVER\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "\u{0}\u{1}BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:y\r\nDTSTART:20261102T090000Z\r\nRRULE:FREQ=SECONDLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    ] {
        let _ = parse_ics(text, &wide(), chrono_tz::UTC);
    }
}
