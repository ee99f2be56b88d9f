//! Nurture sequences end to end against a real SMTP server (aiosmtpd) and, where mail capture
//! is involved, a real Maildir or Dovecot; every store test on SQLite and PostgreSQL. Time is
//! the injected clock: nothing sleeps to wait for a due step.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use common::smtp::SmtpSink;
use common::{TestDb, count_kind};
use rapport::config::Config;
use rapport::sequences::Sequence;
use rapport::sequences::engine::{Engine, EnrollResult};
use rapport::sequences::sender::MailboxSender;
use rapport::store::{LeadColumns, NewLead};
use tokio_util::sync::CancellationToken;

const THREE_STEPS: &str = r#"name: Trial follow-up
window: { start: "09:00", end: "17:00", days: [mon, tue, wed, thu, fri], jitter: 20m }
steps:
  - email:
      subject: "Hello {{ lead.first_name }}"
      body: |
        Hi {{ lead.first_name }},
        how is the trial going at {{ company.name }}?
        Unsubscribe: {{ unsubscribe_url }}
  - wait: 1 business day
  - email:
      reply_to_previous: true
      body: "Following up, {{ lead.first_name }}."
  - wait: 2 days
  - task: "Call {{ lead.name }}"
  - email:
      reply_to_previous: true
      body: "Last note from {{ rep.first_name }}."
"#;

/// A world for one test: config files in a temp dir, the SMTP server, the store.
struct World {
    dir: tempfile::TempDir,
    config: Config,
    engine: Arc<Engine>,
    sender: MailboxSender,
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

/// `mailbox` is the YAML of alice's mailbox without its `smtp:` block (indented entry body).
async fn world(db: &TestDb, sink: &SmtpSink, sequence: &str, smtp_extra: &str, mailbox: Option<&str>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let seq_dir = dir.path().join("sequences");
    std::fs::create_dir_all(&seq_dir).unwrap();
    std::fs::write(seq_dir.join("trial.yaml"), sequence).unwrap();
    let maildir = dir.path().join("maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("unsub.key"), "a test key that is long enough\n").unwrap();
    let mailbox = mailbox
        .map(str::to_owned)
        .unwrap_or_else(|| format!("    kind: maildir\n    path: {}\n", maildir.display()));
    let extra = format!(
        "sequences_dir: {}\nsequences:\n  unsubscribe_url: https://rapport.example.com\n  unsubscribe_address: unsubscribe@example.com\n  unsubscribe_key_file: {}\nmailboxes:\n  - id: alice-mail\n{mailbox}    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: none\n{smtp_extra}",
        seq_dir.display(),
        dir.path().join("unsub.key").display(),
        sink.port,
    );
    let yaml = common::config_yaml(&db.url, &extra).replace(
        "    time_zone: Europe/Stockholm\n",
        "    time_zone: Europe/Stockholm\n    mailboxes: [alice-mail]\n",
    );
    let path = dir.path().join("rapport.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    db.store.sync_reps(&config).await.unwrap();
    let seq = Sequence::load(&seq_dir.join("trial.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let engine = Arc::new(Engine::new(Arc::new(config.clone()), db.store.clone(), vec![seq]).unwrap());
    let sender = MailboxSender::new(engine.clone(), "alice-mail").unwrap();
    World {
        dir,
        config,
        engine,
        sender,
    }
}

fn lead(email: &str, name: &str, tz: Option<&str>) -> NewLead {
    NewLead {
        email: email.into(),
        name: Some(name.into()),
        company_name: Some("Acme".into()),
        company_domain: Some(rapport::address::domain_of(email).into()),
        owner_rep: Some("alice".into()),
        time_zone: tz.map(str::to_owned),
        status: Some("trial".into()),
        attributes: Default::default(),
    }
}

async fn enroll(w: &World, email: &str) -> i64 {
    match w.engine.enroll("trial", email).await.unwrap() {
        EnrollResult::Enrolled { enrollment_id, .. } => enrollment_id,
        other => panic!("not enrolled: {other:?}"),
    }
}

async fn pass(w: &World) -> usize {
    w.sender.pass(&CancellationToken::new()).await.unwrap().sent
}

fn berlin_hour(t: DateTime<Utc>) -> (chrono::Weekday, u32) {
    use chrono::Datelike;
    let l = t.with_timezone(&chrono_tz::Europe::Berlin);
    (l.weekday(), l.hour())
}

/// Friday 23 Oct 2026 09:00 in Berlin (CEST); the clocks go back on Sunday 25 Oct.
async fn three_steps_across_a_weekend_and_dst(db: TestDb) {
    let sink = SmtpSink::start(&[]);
    db.clock.set(utc(2026, 10, 23, 7, 0));
    let w = world(&db, &sink, THREE_STEPS, "      min_gap: 0s\n", None).await;
    common::add_leads(
        &db.store,
        &[lead("sara@acme.example", "Sara Lind", Some("Europe/Berlin"))],
    )
    .await;
    let id = enroll(&w, "sara@acme.example").await;
    // A second enrollment in the same sequence at once is refused.
    assert_eq!(
        w.engine.enroll("trial", "sara@acme.example").await.unwrap(),
        EnrollResult::AlreadyEnrolled
    );

    assert_eq!(pass(&w).await, 1, "first step goes out at once, inside the window");
    // Saturday and Sunday: nothing.
    db.clock.set(utc(2026, 10, 24, 10, 0));
    assert_eq!(pass(&w).await, 0);
    db.clock.set(utc(2026, 10, 25, 10, 0));
    assert_eq!(pass(&w).await, 0);
    // Monday 08:59 CET is one minute early (09:00 CET is 08:00 UTC after the change).
    db.clock.set(utc(2026, 10, 26, 7, 59));
    assert_eq!(pass(&w).await, 0);
    db.clock.set(utc(2026, 10, 26, 8, 0));
    assert_eq!(pass(&w).await, 1, "second step on Monday 09:00 local");
    db.clock.set(utc(2026, 10, 27, 12, 0));
    assert_eq!(pass(&w).await, 0, "the wait is two days");
    db.clock.set(utc(2026, 10, 28, 8, 0));
    assert_eq!(pass(&w).await, 1, "third email on Wednesday 09:00 local");
    assert_eq!(pass(&w).await, 0);

    let rows = db.store.outbox_of_enrollment(id).await.unwrap();
    let sent: Vec<DateTime<Utc>> = rows.iter().map(|r| r.sent_at.unwrap()).collect();
    assert_eq!(
        sent,
        vec![
            utc(2026, 10, 23, 7, 0),
            utc(2026, 10, 26, 8, 0),
            utc(2026, 10, 28, 8, 0)
        ]
    );
    for t in &sent {
        assert_eq!(berlin_hour(*t).1, 9, "{t} is 09:00 in Berlin");
    }
    let e = db.store.enrollment(id).await.unwrap().unwrap();
    assert_eq!(e.state, "completed");

    let got = sink.messages();
    assert_eq!(got.len(), 3);
    for (m, r) in got.iter().zip(&rows) {
        assert_eq!(m.envelope_to, vec!["sara@acme.example".to_string()]);
        assert_eq!(m.message_id(), r.message_id);
        let lu = m.header("List-Unsubscribe").unwrap();
        assert!(
            lu.contains("<mailto:unsubscribe@example.com?subject=unsubscribe%20"),
            "{lu}"
        );
        assert!(lu.contains("<https://rapport.example.com/unsubscribe/"), "{lu}");
        assert_eq!(
            m.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(m.header("From").unwrap().contains("alice@example.com"));
    }
    assert_eq!(got[0].header("Subject").as_deref(), Some("Hello Sara"));
    assert_eq!(got[0].header("In-Reply-To"), None);
    assert_eq!(
        got[0].header("Date").as_deref(),
        Some("Fri, 23 Oct 2026 07:00:00 +0000")
    );
    assert!(got[0].raw.contains("how is the trial going at Acme?"), "{}", got[0].raw);
    assert_eq!(got[1].header("Subject").as_deref(), Some("Re: Hello Sara"));
    assert_eq!(got[1].header("In-Reply-To"), Some(format!("<{}>", rows[0].message_id)));
    assert_eq!(got[2].header("Subject").as_deref(), Some("Re: Hello Sara"));
    assert_eq!(got[2].header("In-Reply-To"), Some(format!("<{}>", rows[1].message_id)));
    assert_eq!(
        got[2].header("References"),
        Some(format!("<{}> <{}>", rows[0].message_id, rows[1].message_id))
    );
    // Each sent step is one email_sent activity (source sequence), the task one task.
    assert_eq!(count_kind(&db.store, "email_sent").await, 3);
    assert_eq!(count_kind(&db.store, "task").await, 1);
    drop(w);
}

/// 5xx for the recipient: failed, the address suppressed as bounced, the sequence stopped.
/// 4xx: retried later with the same message.
async fn smtp_failures(db: TestDb) {
    let sink = SmtpSink::start(&["--reject5", "gone", "--tempfail4", "busy"]);
    db.clock.set(utc(2026, 11, 2, 9, 0));
    let w = world(&db, &sink, THREE_STEPS, "      min_gap: 0s\n", None).await;
    common::add_leads(
        &db.store,
        &[
            lead("gone@acme.example", "Gone Person", None),
            lead("busy@acme.example", "Busy Person", None),
        ],
    )
    .await;
    let gone = enroll(&w, "gone@acme.example").await;
    let busy = enroll(&w, "busy@acme.example").await;
    assert_eq!(pass(&w).await, 0);
    assert!(sink.messages().is_empty());

    let g = db.store.enrollment(gone).await.unwrap().unwrap();
    assert_eq!(
        (g.state.as_str(), g.stop_reason.as_deref()),
        ("stopped", Some("bounced"))
    );
    let row = db.store.outbox_for_step(gone, 0).await.unwrap().unwrap();
    assert_eq!(row.state, "failed");
    assert!(row.last_error.unwrap().contains("550"));
    assert_eq!(
        db.store.suppression_of("gone@acme.example").await.unwrap().as_deref(),
        Some("bounced")
    );
    // Nothing is ever sent to a suppressed address: enrolling again is refused.
    assert!(matches!(
        w.engine.enroll("trial", "gone@acme.example").await.unwrap(),
        EnrollResult::Refused(_)
    ));

    let b = db.store.enrollment(busy).await.unwrap().unwrap();
    assert_eq!(b.state, "active");
    let row = db.store.outbox_for_step(busy, 0).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("retry", 1));
    let retry_at = row.next_attempt_at.unwrap();
    assert_eq!(retry_at, utc(2026, 11, 2, 9, 5));
    assert_eq!(b.next_due_at, Some(retry_at));
    // Not before the backoff; then the same message (same Message-ID) is tried again.
    db.clock.set(utc(2026, 11, 2, 9, 4));
    assert_eq!(pass(&w).await, 0);
    assert_eq!(db.store.outbox_for_step(busy, 0).await.unwrap().unwrap().attempts, 1);
    db.clock.set(retry_at);
    assert_eq!(pass(&w).await, 0);
    let again = db.store.outbox_for_step(busy, 0).await.unwrap().unwrap();
    assert_eq!((again.attempts, again.message_id), (2, row.message_id));
    assert_eq!(again.next_attempt_at, Some(utc(2026, 11, 2, 9, 15)));
}

/// 500 leads enrolled at once: the mailbox's daily cap and minimum gap hold. The clock jumps
/// to each next allowed time; only the capped number of messages crosses SMTP.
async fn caps_and_gaps_with_500_leads(db: TestDb) {
    let sink = SmtpSink::start(&[]);
    db.clock.set(utc(2026, 11, 2, 8, 0)); // Monday 09:00 in Stockholm
    let single = "name: One\nwindow: { start: \"09:00\", end: \"17:00\", jitter: 0s }\nsteps:\n  - email: { subject: \"Hi\", body: \"Hello {{ lead.email }}\" }\n";
    let w = world(&db, &sink, single, "      daily_cap: 12\n      min_gap: 15m\n", None).await;
    let leads: Vec<NewLead> = (0..500)
        .map(|i| lead(&format!("lead{i:03}@acme.example"), "Some One", None))
        .collect();
    db.store.upsert_leads(&leads, LeadColumns::all()).await.unwrap();
    let seq = w.engine.sequences["trial"].clone();
    for i in 0..500 {
        let l = db
            .store
            .lead_by_email(&format!("lead{i:03}@acme.example"))
            .await
            .unwrap()
            .unwrap();
        let l = db.store.lead_for_sending(l.id).await.unwrap().unwrap();
        assert!(matches!(
            w.engine.enroll_lead(&seq, &l).await.unwrap(),
            EnrollResult::Enrolled { .. }
        ));
    }
    let end = utc(2026, 11, 5, 0, 0); // three working days
    let mut sent = 0;
    let mut rounds = 0;
    while db.clock_now() < end {
        rounds += 1;
        assert!(rounds < 1000, "the sender never went idle");
        let r = w.sender.pass(&CancellationToken::new()).await.unwrap();
        sent += r.sent;
        let next = r.next_wake.expect("500 leads are waiting");
        assert!(
            next > db.clock_now(),
            "a pass returns only when nothing more may go now"
        );
        db.clock.set(next);
    }
    let msgs = sink.messages();
    assert_eq!(msgs.len(), sent);
    assert_eq!(sent, 36, "12 a day for three days");
    let mut attempts: Vec<DateTime<Utc>> = Vec::new();
    for i in 0..500 {
        let l = db
            .store
            .lead_by_email(&format!("lead{i:03}@acme.example"))
            .await
            .unwrap()
            .unwrap();
        for e in db.store.enrollments(None, Some(l.id)).await.unwrap() {
            for r in db.store.outbox_of_enrollment(e.id).await.unwrap() {
                attempts.push(r.attempted_at.unwrap());
            }
        }
    }
    attempts.sort();
    assert_eq!(attempts.len(), 36);
    for pair in attempts.windows(2) {
        assert!(pair[1] - pair[0] >= chrono::Duration::minutes(15), "{pair:?}");
    }
    let mut per_day = std::collections::BTreeMap::new();
    for t in &attempts {
        *per_day
            .entry(t.with_timezone(&chrono_tz::Europe::Stockholm).date_naive())
            .or_insert(0) += 1;
        let h = t.with_timezone(&chrono_tz::Europe::Stockholm).hour();
        assert!((9..17).contains(&h), "{t} outside the window");
    }
    assert_eq!(per_day.values().copied().collect::<Vec<_>>(), vec![12, 12, 12]);
}

trait ClockNow {
    fn clock_now(&self) -> DateTime<Utc>;
}
impl ClockNow for TestDb {
    fn clock_now(&self) -> DateTime<Utc> {
        use rapport::clock::Clock;
        self.clock.now()
    }
}

/// Writes a message into alice's Maildir INBOX, delivered now by the test's clock, and runs
/// mail capture over it.
async fn capture(w: &World, db: &TestDb, name: &str, message: Vec<u8>) {
    let path = w.dir.path().join("maildir/new").join(name);
    std::fs::write(&path, message).unwrap();
    // A Maildir message was received when its file was written: without this, the machine's
    // real date, and a Date header more than 30 days before it is not believed.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(db.clock_now().into()))
        .unwrap();
    let (tasks, _) = rapport::daemon::mailbox_tasks(&w.config, &db.store).await.unwrap();
    for t in &tasks {
        t.sync_once().await.unwrap();
    }
}

/// An auto-reply pauses the sequence until the return date it states; then it resumes.
async fn auto_reply_pauses(db: TestDb) {
    let sink = SmtpSink::start(&[]);
    db.clock.set(utc(2026, 11, 2, 9, 0)); // Monday
    let w = world(&db, &sink, THREE_STEPS, "      min_gap: 0s\n", None).await;
    common::add_leads(
        &db.store,
        &[lead("sara@acme.example", "Sara Lind", Some("Europe/Berlin"))],
    )
    .await;
    let id = enroll(&w, "sara@acme.example").await;
    assert_eq!(pass(&w).await, 1);
    let first = sink.messages()[0].message_id();
    let reply = format!(
        "Message-ID: <ooo-1@acme.example>\r\nFrom: Sara Lind <sara@acme.example>\r\nTo: alice@example.com\r\nSubject: Automatic reply: out of office until 6 November\r\nAuto-Submitted: auto-replied\r\nIn-Reply-To: <{first}>\r\nDate: Mon, 02 Nov 2026 09:05:00 +0000\r\n\r\nI am away.\r\n"
    );
    capture(&w, &db, "1.ooo", reply.into_bytes()).await;
    assert_eq!(count_kind(&db.store, "auto_reply").await, 1);
    db.clock.set(utc(2026, 11, 3, 9, 0)); // the next business day: paused
    assert_eq!(pass(&w).await, 0);
    let e = db.store.enrollment(id).await.unwrap().unwrap();
    assert_eq!(e.state, "paused");
    // Back after the 6th: resumes on Saturday 7th → the next window, Monday 9 Nov 09:00 Berlin.
    let due = e.next_due_at.unwrap();
    assert_eq!(berlin_hour(due), (chrono::Weekday::Mon, 9));
    assert_eq!(
        due.with_timezone(&chrono_tz::Europe::Berlin).date_naive().to_string(),
        "2026-11-09"
    );
    db.clock.set(due);
    assert_eq!(pass(&w).await, 1, "resumes after the stated return date");
    assert_eq!(db.store.enrollment(id).await.unwrap().unwrap().state, "active");
}

/// Unsubscribing by one-click POST (the router on a loopback listener) and by mailto (a
/// message to the unsubscribe address, read by mail capture) stops the sequence.
async fn unsubscribe_one_click_and_mailto(db: TestDb) {
    let sink = SmtpSink::start(&[]);
    db.clock.set(utc(2026, 11, 2, 9, 0));
    let w = world(&db, &sink, THREE_STEPS, "      min_gap: 0s\n", None).await;
    common::add_leads(
        &db.store,
        &[
            lead("sara@acme.example", "Sara Lind", None),
            lead("omid@acme.example", "Omid Karimi", None),
        ],
    )
    .await;
    let sara = enroll(&w, "sara@acme.example").await;
    let omid = enroll(&w, "omid@acme.example").await;
    assert_eq!(pass(&w).await, 2);
    let msgs = sink.messages();
    let link_of = |to: &str| {
        let m = msgs.iter().find(|m| m.envelope_to[0] == to).unwrap();
        let lu = m.header("List-Unsubscribe").unwrap();
        let url = lu
            .split("<https://rapport.example.com")
            .nth(1)
            .unwrap()
            .split('>')
            .next()
            .unwrap()
            .to_owned();
        let mailto = lu
            .split("<mailto:")
            .nth(1)
            .unwrap()
            .split('>')
            .next()
            .unwrap()
            .to_owned();
        (url, mailto)
    };

    // One-click POST, RFC 8058.
    let key = w.engine.unsubscribe_key.clone().unwrap();
    let app = rapport::sequences::unsubscribe::unsubscribe_router(db.store.clone(), key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (path, _) = link_of("sara@acme.example");
    let client = reqwest::Client::new();
    let page = client.get(format!("http://{addr}{path}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form method=post"));
    assert_eq!(
        db.store.enrollment(sara).await.unwrap().unwrap().state,
        "active",
        "GET changes nothing"
    );
    let bad = client
        .post(format!("http://{addr}/unsubscribe/1-1-{}", "0".repeat(64)))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);
    let ok = client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    server.abort();
    let e = db.store.enrollment(sara).await.unwrap().unwrap();
    assert_eq!(
        (e.state.as_str(), e.stop_reason.as_deref()),
        ("stopped", Some("unsubscribed"))
    );
    assert_eq!(
        db.store.suppression_of("sara@acme.example").await.unwrap().as_deref(),
        Some("unsubscribed")
    );

    // mailto: the lead's mail client sends the subject from the link.
    let (_, mailto) = link_of("omid@acme.example");
    let (to, query) = mailto.split_once('?').unwrap();
    let subject = query.strip_prefix("subject=").unwrap().replace("%20", " ");
    let msg = format!(
        "Message-ID: <unsub-1@acme.example>\r\nFrom: omid@acme.example\r\nTo: {to}\r\nCc: alice@example.com\r\nSubject: {subject}\r\nDate: Mon, 02 Nov 2026 09:30:00 +0000\r\n\r\n\r\n"
    );
    capture(&w, &db, "2.unsub", msg.into_bytes()).await;
    db.clock.set(utc(2026, 11, 4, 9, 0));
    assert_eq!(pass(&w).await, 0, "nothing more to either lead");
    let e = db.store.enrollment(omid).await.unwrap().unwrap();
    assert_eq!(
        (e.state.as_str(), e.stop_reason.as_deref()),
        ("stopped", Some("unsubscribed"))
    );
    assert_eq!(sink.messages().len(), 2);
}

store_tests!(
    three_steps_across_a_weekend_and_dst,
    smtp_failures,
    caps_and_gaps_with_500_leads,
    auto_reply_pauses,
    unsubscribe_one_click_and_mailto,
);

/// alice's mailbox on a Dovecot of its own (IMAP, plain on loopback).
fn imap_mailbox(dovecot: &common::dovecot::Dovecot, pw_dir: &std::path::Path) -> String {
    std::fs::write(pw_dir.join("alice.pw"), "alice-pw\n").unwrap();
    format!(
        "    kind: imap\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    username: alice\n    password_file: {}\n    poll_interval: 1h\n",
        dovecot.port(),
        pw_dir.join("alice.pw").display()
    )
}

/// The lead's reply, APPENDed to the rep's INBOX in Dovecot and read by mail capture, stops
/// the sequence before its next step.
async fn reply_in_dovecot_stops_the_sequence(db: TestDb) {
    let sink = SmtpSink::start(&[]);
    let dovecot = common::dovecot::Dovecot::start(&[("alice", "alice-pw")]);
    let pw = tempfile::tempdir().unwrap();
    db.clock.set(utc(2026, 11, 2, 9, 0));
    let mb = imap_mailbox(&dovecot, pw.path());
    let w = world(&db, &sink, THREE_STEPS, "      min_gap: 0s\n", Some(&mb)).await;
    common::add_leads(&db.store, &[lead("sara@acme.example", "Sara Lind", None)]).await;
    let id = enroll(&w, "sara@acme.example").await;
    assert_eq!(pass(&w).await, 1);
    let first = sink.messages()[0].message_id();
    let reply = common::message(
        "reply-1@acme.example",
        "Sara Lind <sara@acme.example>",
        "alice@example.com",
        "Re: Hello Sara",
        &format!("In-Reply-To: <{first}>\r\nReferences: <{first}>\r\n"),
    );
    let mut imap = common::dovecot::ImapSetup::login(dovecot.port(), "alice", "alice-pw");
    imap.append("INBOX", &reply);
    // The server also kept a copy of the sent step in Sent (as Gmail does): the same activity.
    imap.create("Sent");
    imap.append("Sent", sink.messages()[0].raw.as_bytes());
    imap.logout();
    let (tasks, _) = rapport::daemon::mailbox_tasks(&w.config, &db.store).await.unwrap();
    for t in &tasks {
        t.sync_once().await.unwrap();
    }
    assert_eq!(
        count_kind(&db.store, "reply_received").await,
        1,
        "mail capture saw the reply"
    );
    db.clock.set(utc(2026, 11, 3, 9, 0));
    assert_eq!(pass(&w).await, 0);
    let e = db.store.enrollment(id).await.unwrap().unwrap();
    assert_eq!(
        (e.state.as_str(), e.stop_reason.as_deref()),
        ("stopped", Some("replied"))
    );
    db.clock.set(utc(2026, 11, 10, 9, 0));
    assert_eq!(pass(&w).await, 0);
    assert_eq!(sink.messages().len(), 1);
}

/// Rows left in `sending` by a crash: the one whose copy is in Sent (found by `UID SEARCH
/// HEADER Message-ID`) becomes sent and is not resent; the one not found is not resent by
/// default but marked `unknown` and reported.
async fn crash_reconciliation_searches_sent(db: TestDb) {
    let sink = SmtpSink::start(&[]);
    let dovecot = common::dovecot::Dovecot::start(&[("alice", "alice-pw")]);
    let pw = tempfile::tempdir().unwrap();
    db.clock.set(utc(2026, 11, 2, 9, 0));
    let mb = imap_mailbox(&dovecot, pw.path());
    let w = world(&db, &sink, THREE_STEPS, "      min_gap: 0s\n", Some(&mb)).await;
    common::add_leads(
        &db.store,
        &[
            lead("sara@acme.example", "Sara Lind", None),
            lead("omid@acme.example", "Omid Karimi", None),
        ],
    )
    .await;
    let sara = enroll(&w, "sara@acme.example").await;
    let omid = enroll(&w, "omid@acme.example").await;
    // Simulate a crash inside the SMTP transaction: rows planned and marked sending, the
    // enrollments leased, and one message (sara's) made it to the server, which kept a copy in Sent.
    let lease_end = utc(2026, 11, 2, 9, 5);
    let mut ids = Vec::new();
    for (e, to) in [(sara, "sara@acme.example"), (omid, "omid@acme.example")] {
        let claimed = db
            .store
            .claim_due("alice-mail", db.clock_now(), lease_end)
            .await
            .unwrap()
            .unwrap();
        assert!(claimed.id == e || claimed.id == sara || claimed.id == omid);
        let mid = format!("crash-{e}@example.com");
        let raw = String::from_utf8(common::message(&mid, "alice@example.com", to, "Hello", "")).unwrap();
        let row = db
            .store
            .plan_outbox(&rapport::store::NewOutbox {
                enrollment_id: e,
                step_index: 0,
                mailbox_id: "alice-mail",
                message_id: &mid,
                recipient: to,
                subject: "Hello",
                raw: &raw,
                sender: "alice@example.com",
            })
            .await
            .unwrap();
        db.store.outbox_sending(row.id).await.unwrap();
        ids.push((e, mid, raw));
    }
    let mut imap = common::dovecot::ImapSetup::login(dovecot.port(), "alice", "alice-pw");
    imap.create("Sent");
    imap.append("Sent", ids[0].2.as_bytes());
    imap.logout();

    // Within the lease nothing is touched (a live sender may be in the middle of it).
    assert_eq!(w.sender.reconcile().await.unwrap(), 0);
    db.clock.set(utc(2026, 11, 2, 9, 10));
    assert_eq!(pass(&w).await, 0, "nothing is resent");
    assert!(sink.messages().is_empty());
    let s = db.store.outbox_for_step(sara, 0).await.unwrap().unwrap();
    assert_eq!(s.state, "sent");
    let o = db.store.outbox_for_step(omid, 0).await.unwrap().unwrap();
    assert_eq!(o.state, "unknown");
    assert_eq!(
        count_kind(&db.store, "email_sent").await,
        1,
        "the found message counts once"
    );
    // Sara goes on with her next step later; Omid's enrollment is held.
    let e = db.store.enrollment(sara).await.unwrap().unwrap();
    assert_eq!((e.state.as_str(), e.next_step), ("active", 2));
    assert_eq!(db.store.enrollment(omid).await.unwrap().unwrap().state, "held");
    let status = rapport::sequences::commands::status(&w.engine, None).await.unwrap();
    assert!(
        status.contains(&format!("delivery unknown after a crash: <{}>", ids[1].1)),
        "{status}"
    );
}

/// `append_to_sent: true` (for servers that do not keep SMTP-sent mail): each sent step is
/// APPENDed to the rep's Sent folder in Dovecot, flagged seen, byte for byte what the SMTP
/// server received.
async fn append_to_sent_keeps_a_copy_in_sent(db: TestDb) {
    let sink = SmtpSink::start(&[]);
    let dovecot = common::dovecot::Dovecot::start(&[("alice", "alice-pw")]);
    let pw = tempfile::tempdir().unwrap();
    db.clock.set(utc(2026, 11, 2, 9, 0));
    let mb = imap_mailbox(&dovecot, pw.path());
    let mut imap = common::dovecot::ImapSetup::login(dovecot.port(), "alice", "alice-pw");
    imap.create("Sent");
    imap.logout();
    let w = world(
        &db,
        &sink,
        THREE_STEPS,
        "      min_gap: 0s\n      append_to_sent: true\n",
        Some(&mb),
    )
    .await;
    common::add_leads(&db.store, &[lead("sara@acme.example", "Sara Lind", None)]).await;
    enroll(&w, "sara@acme.example").await;
    assert_eq!(pass(&w).await, 1);
    let sent = sink.messages();
    assert_eq!(sent.len(), 1);
    let sent_dir = dovecot.maildir("alice").join(".Sent");
    let copies: Vec<(String, String)> = ["cur", "new"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(sent_dir.join(sub)).unwrap())
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    assert_eq!(copies.len(), 1, "one copy in Sent: {copies:?}");
    let (name, text) = &copies[0];
    assert!(
        text.contains(&format!("<{}>", sent[0].message_id())),
        "the copy is the sent message:\n{text}"
    );
    assert!(name.ends_with(":2,S"), "flagged \\Seen: {name}");
}

store_tests!(
    reply_in_dovecot_stops_the_sequence,
    crash_reconciliation_searches_sent,
    append_to_sent_keeps_a_copy_in_sent,
);

/// `rapport check` names every mistake of a bad sequence file with file:line:column.
#[test]
fn check_locates_mistakes_in_sequence_files() {
    let dir = tempfile::tempdir().unwrap();
    let seqs = dir.path().join("sequences");
    std::fs::create_dir_all(&seqs).unwrap();
    std::fs::write(
        seqs.join("bad.yaml"),
        "name: Bad\nwindow: { start: \"18:00\", end: \"09:00\" }\nstep_delay: 3\nsteps:\n  - email: { subject: \"Hi {{ lead.frist_name }}\", body: \"x\" }\n  - wait: 3 weeks\n",
    )
    .unwrap();
    let cfg = dir.path().join("rapport.yaml");
    std::fs::write(&cfg, common::config_yaml("sqlite://x.db", "sequences_dir: sequences\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let f = seqs.join("bad.yaml");
    let f = f.display();
    assert!(
        err.contains(&format!("{f}:2:")) && err.contains("the window ends (09:00) before it starts (18:00)"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:3:1: error: unknown key `step_delay`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:5:30: error: unknown template variable `lead.frist_name`")),
        "{err}"
    );
    assert!(err.contains("did you mean `lead.first_name`?"), "{err}");
    assert!(
        err.contains(&format!("{f}:6:11: error: `3 weeks` is not a wait")),
        "{err}"
    );
    assert!(err.contains("4 errors found"), "{err}");
}

/// Enroll rules enroll leads as they are imported; preview renders every step with its time
/// without sending; upcoming counts what is due per mailbox against the cap.
async fn enroll_rules_preview_and_upcoming(db: TestDb) {
    let sink = SmtpSink::start(&[]);
    db.clock.set(utc(2026, 11, 6, 15, 0)); // Friday 16:00 in Berlin
    let with_rule = THREE_STEPS.replace(
        "name: Trial follow-up\n",
        "name: Trial follow-up\nenroll: [{ status: trial }]\n",
    );
    let w = world(&db, &sink, &with_rule, "      min_gap: 0s\n      daily_cap: 5\n", None).await;
    let preview_lead = lead("nina@acme.example", "Nina Berg", Some("Europe/Berlin"));
    common::add_leads(
        &db.store,
        &[NewLead {
            status: Some("customer".into()),
            ..preview_lead
        }],
    )
    .await;
    let text = rapport::sequences::commands::preview(&w.engine, "trial", "nina@acme.example")
        .await
        .unwrap();
    assert!(
        text.contains("step 1: email at Fri 2026-11-06 16:00 CET\nSubject: Hello Nina"),
        "{text}"
    );
    assert!(
        text.contains("step 3: email at Mon 2026-11-09 16:00 CET\nSubject: Re: Hello Nina"),
        "{text}"
    );
    assert!(
        text.contains("step 5: task at Wed 2026-11-11 16:00 CET: Call Nina Berg"),
        "{text}"
    );
    assert!(sink.messages().is_empty(), "preview sends nothing");

    // Leads arrive while the daemon runs: the rule (status trial) enrolls them on the next pass.
    let leads: Vec<NewLead> = (0..7)
        .map(|i| lead(&format!("t{i}@acme.example"), "Tia Trial", None))
        .collect();
    db.store.upsert_leads(&leads, LeadColumns::all()).await.unwrap();
    assert_eq!(pass(&w).await, 5, "the daily cap");
    assert_eq!(
        db.store.enrollments(None, None).await.unwrap().len(),
        7,
        "the customer is not enrolled"
    );
    let up = rapport::sequences::commands::upcoming(&w.engine, 7).await.unwrap();
    assert!(up.contains("alice-mail           2026-11-06        2      5"), "{up}");
}

store_tests!(enroll_rules_preview_and_upcoming);
