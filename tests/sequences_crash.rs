//! The daemon (`rapport run`) stopped while it sends: killed with SIGKILL at random moments, 20
//! times, or stopped with SIGTERM; then restarted until everything is out. Every step reaches
//! the SMTP server exactly once. The SMTP server keeps a copy of each accepted message in the
//! rep's Sent folder in Dovecot (as Gmail and Microsoft 365 do), which is what crash
//! reconciliation searches.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestDb;
use common::dovecot::Dovecot;
use common::smtp::SmtpSink;
use rapport::store::{LeadColumns, NewLead};

const LEADS: usize = 25;
const STEPS: usize = 2;

fn rapport(config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rapport"));
    c.arg("--config").arg(config).args(args).env("RAPPORT_LOG", "warn");
    c
}

/// A sequence of two emails, LEADS leads enrolled through the CLI, a daemon config sending to
/// an SMTP sink that copies into Dovecot's Sent.
struct Setup {
    _dovecot: Dovecot,
    sink: SmtpSink,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

async fn setup(db: &TestDb) -> Setup {
    let dovecot = Dovecot::start(&[("alice", "alice-pw")]);
    dovecot.write_maildir_messages("alice", Some("Sent"), std::iter::empty::<Vec<u8>>());
    let sent_dir = dovecot.maildir("alice").join(".Sent");
    let sink = SmtpSink::start(&["--copy-to", sent_dir.to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    let seq_dir = dir.path().join("sequences");
    std::fs::create_dir_all(&seq_dir).unwrap();
    std::fs::write(
        seq_dir.join("trial.yaml"),
        "name: Crash test\nwindow: { start: \"00:00\", end: \"23:59\", days: [mon, tue, wed, thu, fri, sat, sun], jitter: 0s }\nsteps:\n  - email: { subject: \"Hello {{ lead.email }}\", body: \"One\" }\n  - email: { reply_to_previous: true, body: \"Two\" }\n",
    )
    .unwrap();
    let extra = format!(
        "sequences_dir: sequences\nsequences:\n  lease: 1s\n  poll_interval: 1s\nmailboxes:\n  - id: alice-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    username: alice\n    password_file: alice.pw\n    poll_interval: 1h\n    idle: false\n    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: none\n      min_gap: 0s\n      daily_cap: 10000\n      sent_folder_is_authoritative: true\n",
        dovecot.port(),
        sink.port
    );
    let config = common::imap_config(db, dir.path(), &extra).await;
    let leads: Vec<NewLead> = (0..LEADS)
        .map(|i| NewLead {
            email: format!("lead{i:02}@acme.example"),
            name: None,
            company_name: None,
            company_domain: Some("acme.example".into()),
            owner_rep: Some("alice".into()),
            time_zone: None,
            status: None,
            attributes: Default::default(),
        })
        .collect();
    db.store.upsert_leads(&leads, LeadColumns::all()).await.unwrap();
    let mut csv = String::from("email,name\n");
    for l in &leads {
        csv.push_str(&format!("{},x\n", l.email));
    }
    csv.push_str("not an address,y\n");
    std::fs::write(dir.path().join("leads.csv"), csv).unwrap();

    // Enrollment through the CLI; the bad row is named by its number.
    let out = rapport(&config.path, &["enroll", "trial", "--csv"])
        .arg(dir.path().join("leads.csv"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("row {}: invalid email `not an address`", LEADS + 2)),
        "{text}"
    );
    assert!(
        text.contains(&format!("{LEADS} enrolled, 0 already enrolled")),
        "{text}"
    );
    assert!(!out.status.success(), "a refused row makes enroll exit 1");
    Setup {
        _dovecot: dovecot,
        sink,
        _dir: dir,
        config: config.path,
    }
}

async fn sigkill_while_sending_sends_each_step_once(db: TestDb) {
    let Setup {
        _dovecot,
        sink,
        _dir,
        config,
    } = setup(&db).await;
    let mut in_flight_at_kill = Vec::new();
    for _ in 0..20 {
        let mut child = rapport(&config, &["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(fastrand::u64(150..900)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        in_flight_at_kill.push(sink.messages().len());
    }
    eprintln!("messages at the SMTP server after each kill: {in_flight_at_kill:?}");
    finish_and_check(&db, &sink, &config).await;
}

/// SIGTERM while the daemon sends: the message in hand is finished and recorded, the process
/// exits 0 and leaves no row in `sending` (nothing for reconciliation to guess about); the
/// next run sends the rest, nothing twice.
async fn sigterm_while_sending_finishes_the_message_in_hand(db: TestDb) {
    let Setup {
        _dovecot,
        sink,
        _dir: dir,
        config,
    } = setup(&db).await;
    let log = dir.path().join("daemon.log");
    let mut child = rapport(&config, &["run"])
        .env("RAPPORT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + common::daemon::PATIENCE;
    while sink.messages().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "SIGTERM exits 0:\n{text}");
    assert!(text.contains("stopped"), "{text}");
    assert!(
        db.store.outbox_in_state(None, "sending").await.unwrap().is_empty(),
        "a graceful stop leaves nothing in `sending`:\n{text}"
    );
    let sent = db.store.outbox_in_state(None, "sent").await.unwrap().len();
    assert_eq!(
        sink.messages().len(),
        sent,
        "every message the server accepted is recorded as sent, and only those"
    );
    assert!(sent < LEADS * STEPS, "stopped before the end ({sent} sent)");
    finish_and_check(&db, &sink, &config).await;
}

/// Runs `rapport run --once` (after the 1 s lease) until every step is out, then checks that
/// each reached the server exactly once and is recorded once.
async fn finish_and_check(db: &TestDb, sink: &SmtpSink, config: &std::path::Path) {
    let total = LEADS * STEPS;
    for _ in 0..40 {
        if db.store.outbox_in_state(None, "sent").await.unwrap().len() == total {
            break;
        }
        std::thread::sleep(Duration::from_millis(1100));
        let out = rapport(config, &["run", "--once"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let got = sink.messages();
    let mut outbox = Vec::new();
    for st in ["planned", "sending", "sent", "retry", "failed", "unknown"] {
        outbox.extend(db_rows(&db.store, st).await);
    }
    let enrollments = db.store.enrollments(None, None).await.unwrap();
    let not_done: Vec<_> = enrollments.iter().filter(|e| e.state != "completed").collect();
    assert!(
        not_done.is_empty(),
        "enrollments not completed: {not_done:#?}\noutbox: {outbox:?}"
    );
    let mut ids: Vec<String> = got.iter().map(|m| m.message_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "no Message-ID twice");
    for i in 0..LEADS {
        let to = format!("lead{i:02}@acme.example");
        let n = got.iter().filter(|m| m.envelope_to == vec![to.clone()]).count();
        assert_eq!(n, STEPS, "{to} got {n} messages");
    }
    assert_eq!(got.len(), total, "every step exactly once, none lost");
    for state in ["sending", "unknown", "planned", "retry", "failed"] {
        assert!(
            db.store.outbox_in_state(None, state).await.unwrap().is_empty(),
            "rows left in {state}"
        );
    }
    assert_eq!(common::count_kind(&db.store, "email_sent").await, total as i64);
}

async fn db_rows(store: &rapport::store::Store, state: &str) -> Vec<(i64, i32, String, String, i32)> {
    store
        .outbox_in_state(None, state)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.enrollment_id,
                r.step_index,
                r.state,
                r.last_error.unwrap_or_default(),
                r.attempts,
            )
        })
        .collect()
}

store_tests!(
    sigkill_while_sending_sends_each_step_once,
    sigterm_while_sending_finishes_the_message_in_hand,
);
