//! The daemon as an operator runs it, as a real process (`rapport run`) against Dovecot on
//! SQLite and PostgreSQL: systemd notifications, SIGTERM in the middle of a backfill, SIGHUP
//! reloads, and no secret or message body in any log line.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, NotifySocket, PATIENCE};
use common::dovecot::{Dovecot, ImapSetup};
use common::{TestDb, message};
use rapport::config::Config;

fn imap_mailbox(id: &str, port: u16, user: &str, pw_file: &str) -> String {
    format!(
        "  - id: {id}\n    kind: imap\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    username: {user}\n    password_file: {pw_file}\n    poll_interval: 1h\n"
    )
}

/// Writes `rapport.yaml` into `dir`: alice owns `alice_boxes`, bob owns `bob_boxes`, and
/// `mailboxes` defines them.
fn write_config(db: &TestDb, dir: &Path, alice_boxes: &[&str], bob_boxes: &[&str], mailboxes: &str) -> PathBuf {
    let yaml = format!(
        "database:\n  url: \"{}\"\ninternal_domains: [example.com]\nshutdown_timeout: 10s\nreps:\n  - id: alice\n    name: Alice\n    email: alice@example.com\n    mailboxes: [{}]\n  - id: bob\n    name: Bob\n    email: bob@example.com\n    mailboxes: [{}]\n{}",
        db.url,
        alice_boxes.join(", "),
        bob_boxes.join(", "),
        if mailboxes.is_empty() {
            String::new()
        } else {
            format!("mailboxes:\n{mailboxes}")
        }
    );
    let path = dir.join("rapport.yaml");
    std::fs::write(&path, &yaml).unwrap();
    path
}

async fn add_lead(db: &TestDb) {
    common::add_leads(&db.store, &[common::acme_lead("sara@acme.example")]).await;
}

async fn activities_of(db: &TestDb, rep: &str) -> i64 {
    db.store
        .count_by_rep_and_kind(None, None)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.rep_id == rep)
        .map(|c| c.count)
        .sum()
}

async fn wait_until<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not reached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The migrations run by the daemon process; the test's own store must see the tables.
async fn prepare(db: &TestDb, config: &Path) {
    let c = Config::load(config).unwrap_or_else(|e| panic!("{e}"));
    db.store.sync_reps(&c).await.unwrap();
    add_lead(db).await;
}

async fn mail_seen_count(db: &TestDb, mailbox: &str, folder: &str) -> i64 {
    let url = &db.url;
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM mail_seen WHERE mailbox_id = $1 AND folder = $2")
            .bind(mailbox)
            .bind(folder)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM mail_seen WHERE mailbox_id = $1 AND folder = $2")
            .bind(mailbox)
            .bind(folder)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }
}

store_tests!(
    sigterm_mid_backfill_loses_and_duplicates_nothing,
    sighup_applies_a_new_mailbox_list_and_rejects_an_invalid_one,
    no_secret_or_body_in_any_log_line,
    sighup_reconciles_calendars_and_the_http_server,
);

async fn sigterm_mid_backfill_loses_and_duplicates_nothing(db: TestDb) {
    let dovecot = Dovecot::start(&[("alice", "alice-pw")]);
    let n = 12_000;
    let written = dovecot.write_maildir_messages(
        "alice",
        None,
        (0..n).map(|i| {
            message(
                &format!("bulk{i}@acme.example"),
                "sara@acme.example",
                "alice@example.com",
                "hi",
                "",
            )
        }),
    );
    assert_eq!(written, n);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    let config = write_config(
        &db,
        dir.path(),
        &["alice-imap"],
        &[],
        &imap_mailbox("alice-imap", dovecot.port(), "alice", "alice.pw"),
    );
    prepare(&db, &config).await;

    let notify = NotifySocket::bind();
    let sock = notify.path.display().to_string();
    let env = [("NOTIFY_SOCKET", sock.as_str()), ("WATCHDOG_USEC", "2000000")];
    let mut daemon = Daemon::start(&config, &["run"], &env, dir.path());
    notify.wait_for("READY=1", 0);
    // Stop it as soon as the first batch is stored: in the middle of the backfill.
    wait_until("first batch stored", || async { activities_of(&db, "alice").await > 0 }).await;
    daemon.signal("TERM");
    let status = daemon.wait();
    assert!(status.success(), "exit {status:?}:\n{}", daemon.log());
    assert!(notify.has("STOPPING=1"), "{:?}", notify.messages());
    assert!(notify.has("WATCHDOG=1"), "{:?}", notify.messages());
    let log = daemon.log();
    assert!(log.contains("shutting down"), "{log}");

    // What was stored and the cursor agree: every UID up to the cursor is seen, none after.
    let stored = activities_of(&db, "alice").await;
    let cursor = db.store.cursor("alice-imap", "INBOX").await.unwrap();
    let seen = mail_seen_count(&db, "alice-imap", "INBOX").await;
    let cursor_uid = cursor.as_ref().and_then(|c| c.last_uid).unwrap_or(0);
    assert_eq!(seen, cursor_uid, "mail_seen and the committed cursor agree");
    assert_eq!(stored, seen, "every seen message counted once");
    eprintln!(
        "SIGTERM landed after {stored} of {n} messages{}",
        if log.contains("stopping: cursor committed") {
            " (between two batches)"
        } else {
            ""
        }
    );

    // Restart: the rest comes in, nothing twice.
    let mut daemon = Daemon::start(&config, &["run"], &env, dir.path());
    let ready = notify.wait_for("READY=1", notify.count());
    wait_until("backfill complete", || async {
        activities_of(&db, "alice").await >= n as i64
    })
    .await;
    daemon.signal("INT");
    assert!(daemon.wait().success(), "{}", daemon.log());
    assert!(notify.messages()[ready..].iter().any(|m| m.contains("STOPPING=1")));
    assert_eq!(activities_of(&db, "alice").await, n as i64, "no message counted twice");
    assert_eq!(mail_seen_count(&db, "alice-imap", "INBOX").await, n as i64);

    // Compared with the server: nothing missed.
    let c = Config::load(&config).unwrap();
    let checks = rapport::sources::mail::verify::verify_mailbox(&c.mailboxes[0], &db.store, chrono::Utc::now())
        .await
        .unwrap();
    let inbox = checks.iter().find(|c| c.folder == "INBOX").unwrap();
    assert_eq!(inbox.on_server, n, "{checks:?}");
    assert_eq!(inbox.seen, n, "{checks:?}");
    assert!(inbox.missed.is_empty(), "{checks:?}");
    assert_eq!(inbox.pending, 0, "{checks:?}");
}

fn seed(d: &Dovecot, user: &str, pw: &str, ids: &[&str], marker: &str) {
    let mut imap = ImapSetup::login(d.port(), user, pw);
    for id in ids {
        let mut m = message(id, "sara@acme.example", &format!("{user}@example.com"), "hi", "");
        m.extend_from_slice(marker.as_bytes());
        m.extend_from_slice(b"\r\n");
        imap.append("INBOX", &m);
    }
    imap.logout();
}

async fn sighup_applies_a_new_mailbox_list_and_rejects_an_invalid_one(db: TestDb) {
    let dovecot = Dovecot::start(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    seed(
        &dovecot,
        "alice",
        "alice-pw",
        &["a1@acme.example", "a2@acme.example"],
        "",
    );
    seed(
        &dovecot,
        "bob",
        "bob-pw",
        &["b1@acme.example", "b2@acme.example", "b3@acme.example"],
        "",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    std::fs::write(dir.path().join("bob.pw"), "bob-pw\n").unwrap();
    let port = dovecot.port();
    let alice_box = imap_mailbox("alice-imap", port, "alice", "alice.pw");
    let bob_box = imap_mailbox("bob-imap", port, "bob", "bob.pw");
    let config = write_config(&db, dir.path(), &["alice-imap"], &[], &alice_box);
    prepare(&db, &config).await;

    let notify = NotifySocket::bind();
    let sock = notify.path.display().to_string();
    let mut daemon = Daemon::start(&config, &["run"], &[("NOTIFY_SOCKET", sock.as_str())], dir.path());
    notify.wait_for("READY=1", 0);
    wait_until("alice's mail", || async { activities_of(&db, "alice").await == 2 }).await;
    assert_eq!(activities_of(&db, "bob").await, 0);

    // A new mailbox: started by the reload.
    write_config(
        &db,
        dir.path(),
        &["alice-imap"],
        &["bob-imap"],
        &format!("{alice_box}{bob_box}"),
    );
    let seen = notify.count();
    daemon.signal("HUP");
    notify.wait_for("RELOADING=1", seen);
    notify.wait_for("READY=1", seen);
    wait_until("bob's mail after the reload", || async {
        activities_of(&db, "bob").await == 3
    })
    .await;
    daemon.wait_for_log("mailbox added; its task started");

    // Bob's settings change: his task restarts with them, and picks up new mail.
    let bob_changed = bob_box.replace("poll_interval: 1h", "poll_interval: 30m");
    write_config(
        &db,
        dir.path(),
        &["alice-imap"],
        &["bob-imap"],
        &format!("{alice_box}{bob_changed}"),
    );
    daemon.signal("HUP");
    daemon.wait_for_log("mailbox settings changed; its task restarted");
    seed(&dovecot, "bob", "bob-pw", &["b-changed@acme.example"], "");
    wait_until("bob's mail after the restart", || async {
        activities_of(&db, "bob").await == 4
    })
    .await;

    // An invalid config: rejected with its position, the old one keeps running.
    let bad = "internal_domains: [example.com]\nreps:\n  - id: alice\n    name: Alice\n    email: alice@example.com\n    mailboxes: [alice-imapp]\n";
    std::fs::write(&config, bad).unwrap();
    daemon.signal("HUP");
    daemon.wait_for_log("still running on the previous one");
    let log = daemon.log();
    let located = log.lines().any(|l| {
        let Some((_, rest)) = l.split_once(&format!("{}:", config.display())) else {
            return false;
        };
        let mut parts = rest.splitn(3, ':');
        let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        numeric(parts.next()) && numeric(parts.next()) && l.contains("alice-imapp")
    });
    assert!(located, "the error names file:line:column:\n{log}");
    assert!(daemon.is_running());
    // Still running on the old config: alice's IDLE brings new mail in.
    seed(&dovecot, "alice", "alice-pw", &["a3@acme.example"], "");
    wait_until("alice's new mail on the old config", || async {
        activities_of(&db, "alice").await == 3
    })
    .await;

    // Alice's mailbox removed: its task stops, bob's goes on untouched.
    let restarts = daemon.log().matches("its task restarted").count();
    let reloads = daemon.log().matches("configuration reloaded").count();
    write_config(&db, dir.path(), &[], &["bob-imap"], &bob_changed);
    daemon.signal("HUP");
    let deadline = Instant::now() + PATIENCE;
    while daemon.log().matches("configuration reloaded").count() == reloads {
        assert!(Instant::now() < deadline, "no reload:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        daemon
            .log()
            .contains("mailbox removed from the configuration; its task stopped")
    );
    assert!(daemon.log().contains("alice-imap"));
    assert_eq!(
        daemon.log().matches("its task restarted").count(),
        restarts,
        "bob's task was not restarted"
    );
    seed(&dovecot, "bob", "bob-pw", &["b4@acme.example"], "");
    wait_until("bob's new mail", || async { activities_of(&db, "bob").await == 5 }).await;

    daemon.signal("TERM");
    assert!(daemon.wait().success(), "{}", daemon.log());
}

fn ics(uid: &str, organizer: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//rapport tests//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261110T100000Z\r\nDTEND:20261110T110000Z\r\nSUMMARY:Demo\r\nORGANIZER:mailto:{organizer}\r\nATTENDEE:mailto:sara@acme.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status line of `GET path` on loopback, or None when nothing listens.
fn http_status(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().next().map(str::to_owned)
}

async fn sighup_reconciles_calendars_and_the_http_server(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.ics"), ics("a1@test", "alice@example.com")).unwrap();
    std::fs::write(dir.path().join("bob.ics"), ics("b1@test", "bob@example.com")).unwrap();
    let calendar = |id: &str, file: &str| {
        format!("  - id: {id}\n    kind: ics\n    path: {file}\n    past_days: 3650\n    future_days: 3650\n")
    };
    let (first, second) = (free_port(), free_port());
    let write = |bob_calendars: &[&str], calendars: &str, port: u16| {
        let path = write_config(&db, dir.path(), &[], &[], "");
        let yaml = std::fs::read_to_string(&path)
            .unwrap()
            .replace(
                "    mailboxes: []\n  - id: bob",
                "    mailboxes: []\n    calendars: [alice-cal]\n  - id: bob",
            )
            .replacen(
                "    email: bob@example.com\n    mailboxes: []\n",
                &format!(
                    "    email: bob@example.com\n    mailboxes: []\n    calendars: [{}]\n",
                    bob_calendars.join(", ")
                ),
                1,
            );
        let yaml = format!("{yaml}calendars:\n{calendars}http:\n  listen: 127.0.0.1:{port}\n");
        std::fs::write(&path, yaml).unwrap();
        path
    };
    let config = write(&[], &calendar("alice-cal", "alice.ics"), first);
    prepare(&db, &config).await;
    let mut daemon = Daemon::start(&config, &["run"], &[], dir.path());
    wait_until("alice's meeting", || async { activities_of(&db, "alice").await == 1 }).await;
    let deadline = Instant::now() + PATIENCE;
    while http_status(first, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "no HTTP on {first}:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(http_status(first, "/healthz").unwrap().contains(" 200 "));

    // Bob gets a calendar and the listener moves: both applied without a restart.
    let calendars = format!(
        "{}{}",
        calendar("alice-cal", "alice.ics"),
        calendar("bob-cal", "bob.ics")
    );
    write(&["bob-cal"], &calendars, second);
    daemon.signal("HUP");
    wait_until("bob's meeting after the reload", || async {
        activities_of(&db, "bob").await == 1
    })
    .await;
    daemon.wait_for_log("added; started");
    let deadline = Instant::now() + PATIENCE;
    while http_status(second, "/healthz").is_none() || http_status(first, "/healthz").is_some() {
        assert!(
            Instant::now() < deadline,
            "the listener did not move from {first} to {second}:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = daemon.log();
    assert!(
        !log.lines().any(|l| l.contains("restarted") && l.contains("alice-cal")),
        "alice's calendar, unchanged, ran on:\n{log}"
    );
    assert_eq!(activities_of(&db, "alice").await, 1, "nothing counted twice");

    daemon.signal("TERM");
    assert!(daemon.wait().success(), "{}", daemon.log());
}

async fn no_secret_or_body_in_any_log_line(db: TestDb) {
    const ALICE_PW: &str = "pw-S3cr3t-alice-7731";
    const WRONG_PW: &str = "pw-Wr0ng-bob-5519";
    const BODY: &str = "BODY-MARKER-only-in-bodies-4242";
    let dovecot = Dovecot::start(&[("alice", ALICE_PW), ("bob", "bob-real-pw")]);
    // A bounce is fetched whole (body included): the body must still stay out of the logs.
    let mut imap = ImapSetup::login(dovecot.port(), "alice", ALICE_PW);
    imap.append(
        "INBOX",
        format!(
            "Message-ID: <bounce1@mx.example>\r\nFrom: MAILER-DAEMON@mx.example\r\nTo: alice@example.com\r\nSubject: Undelivered Mail\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n{BODY}\r\n"
        )
        .as_bytes(),
    );
    imap.logout();
    let dir = tempfile::tempdir().unwrap();
    // Alice's password comes as a systemd credential ($CREDENTIALS_DIRECTORY/alice-imap).
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("alice-imap"), format!("{ALICE_PW}\n")).unwrap();
    let creds_dir = creds.path().display().to_string();
    std::fs::write(dir.path().join("bob.pw"), format!("{WRONG_PW}\n")).unwrap();
    let port = dovecot.port();
    let config = write_config(
        &db,
        dir.path(),
        &["alice-imap"],
        &["bob-imap"],
        &format!(
            "{}{}",
            imap_mailbox("alice-imap", port, "alice", "alice.pw")
                .replace("password_file: alice.pw", "password_credential: alice-imap"),
            imap_mailbox("bob-imap", port, "bob", "bob.pw")
        ),
    );
    prepare(&db, &config).await;

    // Every level, both formats.
    for (i, format) in ["text", "json"].iter().enumerate() {
        // New mail for each run, so that each logs a sync.
        seed(&dovecot, "alice", ALICE_PW, &[&format!("s{i}@acme.example")], BODY);
        let notify = NotifySocket::bind();
        let sock = notify.path.display().to_string();
        let env = [
            ("NOTIFY_SOCKET", sock.as_str()),
            ("RAPPORT_LOG", "trace"),
            ("CREDENTIALS_DIRECTORY", creds_dir.as_str()),
        ];
        let mut daemon = Daemon::start(&config, &["--log-format", format, "run"], &env, dir.path());
        notify.wait_for("READY=1", 0);
        wait_until("alice's mail", || async {
            activities_of(&db, "alice").await == i as i64 + 1
        })
        .await;
        daemon.wait_for_log("authentication failed");
        daemon.wait_for_log("mail synced");
        daemon.signal("TERM");
        assert!(daemon.wait().success(), "{}", daemon.log());
        let out = format!("{}{}", daemon.log(), daemon.stdout());
        assert!(out.contains("refused the login of bob"), "{format}: {out}");
        if *format == "json" {
            assert!(
                out.lines().filter(|l| !l.is_empty()).all(|l| l.starts_with('{')),
                "JSON lines only"
            );
        }
        for secret in [ALICE_PW, WRONG_PW, "bob-real-pw", BODY] {
            assert!(!out.contains(secret), "{format} log shows `{secret}`");
        }
    }
    // The other commands' output too.
    for args in [&["status"][..], &["check"], &["verify"]] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RAPPORT_LOG", "trace")
            .env("CREDENTIALS_DIRECTORY", &creds_dir)
            .output()
            .unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        for secret in [ALICE_PW, WRONG_PW, "bob-real-pw", BODY] {
            assert!(!out.contains(secret), "`rapport {args:?}` shows `{secret}`");
        }
    }
}

store_tests!(a_service_manager_that_does_not_read_never_stalls_the_daemon);

/// A notification socket nobody reads fills up (10 datagrams by default on Linux), and a
/// blocking send would then stall whatever thread sends: the daemon must keep working and
/// stop cleanly all the same.
async fn a_service_manager_that_does_not_read_never_stalls_the_daemon(db: TestDb) {
    let dovecot = Dovecot::start(&[("alice", "alice-pw")]);
    seed(&dovecot, "alice", "alice-pw", &["q1@acme.example"], "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    let config = write_config(
        &db,
        dir.path(),
        &["alice-imap"],
        &[],
        &imap_mailbox("alice-imap", dovecot.port(), "alice", "alice.pw"),
    );
    prepare(&db, &config).await;
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify.sock");
    let _unread = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    let sock = sock_path.display().to_string();
    // A ping every 100 ms fills the queue within about a second.
    let env = [("NOTIFY_SOCKET", sock.as_str()), ("WATCHDOG_USEC", "200000")];
    let mut daemon = Daemon::start(&config, &["run"], &env, dir.path());
    wait_until("alice's mail", || async { activities_of(&db, "alice").await == 1 }).await;
    std::thread::sleep(Duration::from_secs(2));
    seed(&dovecot, "alice", "alice-pw", &["q2@acme.example"], "");
    wait_until("new mail with the queue full", || async {
        activities_of(&db, "alice").await == 2
    })
    .await;
    daemon.signal("TERM");
    assert!(daemon.wait().success(), "{}", daemon.log());
    assert!(daemon.log().contains("stopped"), "{}", daemon.log());
}
