//! `rapport doctor` and `rapport status` against a real Dovecot (TLS and plain), on SQLite and
//! PostgreSQL.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestDb;
use common::caldav::{DavKind, DavServer};
use common::dovecot::Dovecot;
use common::smtp::SmtpSink;

fn rapport(config: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RAPPORT_LOG", "warn")
        .output()
        .expect("run rapport");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn line<'a>(out: &'a str, subject: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(subject)))
        .unwrap_or_else(|| panic!("no line for {subject}:\n{out}"))
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

store_tests!(doctor_gives_one_verdict_per_check);

async fn doctor_gives_one_verdict_per_check(db: TestDb) {
    let dovecot = Dovecot::start_tls(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let smtp = SmtpSink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    std::fs::write(dir.path().join("bob.pw"), "not-bobs-pw\n").unwrap();
    let ca = dovecot.ca_cert_path();
    let good = format!(
        "  - id: alice-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {}\n    tls: implicit\n    ca_file: {}\n    username: alice\n    password_file: alice.pw\n    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: none\n",
        dovecot.tls_port(),
        ca.display(),
        smtp.port
    );
    let bad = format!(
        "  - id: bob-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    username: bob\n    password_file: bob.pw\n  - id: carol-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    username: carol\n    password_file: bob.pw\n    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: none\n",
        dovecot.port(),
        closed_port(),
        closed_port()
    );
    let write = |boxes: &str, owned: &str| {
        let yaml = common::config_yaml(&db.url, &format!("mailboxes:\n{boxes}")).replace(
            "    time_zone: Europe/Stockholm\n",
            &format!("    time_zone: Europe/Stockholm\n    mailboxes: [{owned}]\n"),
        );
        let path = dir.path().join("rapport.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    };

    let config = write(&format!("{good}{bad}"), "alice-imap, bob-imap, carol-imap");
    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(!ok, "a failed check fails the command:\n{out}");
    assert!(line(&out, "config").starts_with("ok"), "{out}");
    assert!(line(&out, "database:").starts_with("ok"), "{out}");
    assert!(line(&out, "mailbox alice-imap: reach").starts_with("ok"), "{out}");
    let tls = line(&out, "mailbox alice-imap: tls");
    assert!(tls.starts_with("ok") && tls.contains("implicit TLS"), "{out}");
    assert!(line(&out, "mailbox alice-imap: login").starts_with("ok"), "{out}");
    assert!(line(&out, "mailbox bob-imap: reach").starts_with("ok"), "{out}");
    let bob = line(&out, "mailbox bob-imap: login");
    assert!(
        bob.starts_with("FAIL") && bob.contains("refused the login of bob"),
        "{out}"
    );
    assert!(!out.contains("not-bobs-pw"), "no password in the output");
    assert!(line(&out, "mailbox carol-imap: reach").starts_with("FAIL"), "{out}");
    assert!(
        !out.contains("mailbox carol-imap: login"),
        "no login attempt where the server is unreachable:\n{out}"
    );
    // SMTP: the sink answers (no login configured), nothing listens on carol's port.
    assert!(line(&out, "mailbox alice-imap: smtp").starts_with("ok"), "{out}");
    assert!(line(&out, "mailbox carol-imap: smtp").starts_with("FAIL"), "{out}");
    assert!(smtp.messages().is_empty(), "the check sends nothing");
    if db.url.starts_with("postgres") {
        let clock = line(&out, "clock (PostgreSQL server)");
        assert!(clock.starts_with("ok") && clock.contains("skew"), "{out}");
    }
    assert!(out.lines().any(|l| l == "verdict: FAIL"), "{out}");

    // A TLS certificate the client does not trust fails at the TLS step.
    let untrusted = good.replace(&format!("    ca_file: {}\n", ca.display()), "");
    let config = write(&untrusted, "alice-imap");
    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(!ok, "{out}");
    assert!(line(&out, "mailbox alice-imap: tls").starts_with("FAIL"), "{out}");

    let config = write(&good, "alice-imap");
    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(ok, "{out}");
    assert!(out.lines().any(|l| l == "verdict: ok"), "{out}");

    // status: each mailbox with its state, last sync and lag; the outbox.
    let (ok, out) = rapport(&config, &["run", "--once"]);
    assert!(ok, "{out}");
    let (ok, out) = rapport(&config, &["status"]);
    assert!(ok, "{out}");
    let alice = out
        .lines()
        .find(|l| l.trim_start().starts_with("alice-imap"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        alice.contains(" ok ") && alice.contains("last sync 20") && alice.contains("(lag "),
        "{out}"
    );
    assert!(out.contains("outbox:"), "{out}");

    // An invalid config: the first line says so and nothing else is tried.
    std::fs::write(&config, "internal_domains: [example.com]\nreps: 3\n").unwrap();
    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(!ok);
    assert!(out.starts_with("FAIL config"), "{out}");
    assert!(!out.contains("database"), "{out}");
}

/// An iCalendar object with one event a week from now (inside any window).
fn one_event(uid: &str) -> String {
    let start = chrono::Utc::now() + chrono::Duration::days(7);
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//rapport tests//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:{s}\r\nDTEND:{s}\r\nSUMMARY:Demo\r\nORGANIZER:mailto:alice@example.com\r\nATTENDEE:mailto:sara@acme.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        s = start.format("%Y%m%dT%H%M%SZ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reads_each_calendar_and_stores_nothing() {
    let db = TestDb::sqlite().await;
    let dav = DavServer::start(DavKind::Radicale).await;
    dav.put("demo.ics", &one_event("dav-1@test")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.ics"), one_event("ics-1@test")).unwrap();
    std::fs::write(dir.path().join("pw"), "unused\n").unwrap();
    let calendars = format!(
        "calendars:\n\
         \x20 - id: good-ics\n    kind: ics\n    path: alice.ics\n\
         \x20 - id: missing-ics\n    kind: ics\n    path: nowhere.ics\n\
         \x20 - id: dav\n    kind: caldav\n    url: {}\n    username: {}\n    password_file: pw\n\
         \x20 - id: dead-dav\n    kind: caldav\n    url: http://127.0.0.1:{}/\n",
        dav.base_url,
        dav.username,
        closed_port()
    );
    let yaml = common::config_yaml(&db.url, &calendars).replace(
        "    time_zone: Europe/Stockholm\n",
        "    time_zone: Europe/Stockholm\n    calendars: [good-ics, missing-ics, dav, dead-dav]\n",
    );
    let config = dir.path().join("rapport.yaml");
    std::fs::write(&config, yaml).unwrap();

    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(!ok, "{out}");
    let good = line(&out, "calendar good-ics");
    assert!(
        good.starts_with("ok") && good.contains("1 occurrence(s) in the window"),
        "{out}"
    );
    let missing = line(&out, "calendar missing-ics");
    assert!(missing.starts_with("FAIL") && missing.contains("nowhere.ics"), "{out}");
    let dav_line = line(&out, "calendar dav");
    assert!(
        dav_line.starts_with("ok") && dav_line.contains("1 calendar collection(s)"),
        "{out}"
    );
    assert!(line(&out, "calendar dead-dav").starts_with("FAIL"), "{out}");
    assert_eq!(
        common::count_kind(&db.store, "meeting_booked").await,
        0,
        "the doctor stores nothing"
    );
}
