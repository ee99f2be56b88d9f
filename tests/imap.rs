//! Mail capture over IMAP against a real Dovecot, each test on SQLite and PostgreSQL.

mod common;

use common::message;

use std::sync::Arc;
use std::time::Duration;

use common::TestDb;
use common::dovecot::{Dovecot, ImapSetup};
use rapport::config::Config;
use rapport::daemon::{MailboxTask, mailbox_tasks};

struct Env {
    db: TestDb,
    dovecot: Dovecot,
    config: Config,
    _dir: tempfile::TempDir,
}

/// A config with alice (and bob) reading this Dovecot; bob's password is `bob_password`.
async fn env(db: TestDb, bob_password: &str) -> Env {
    let dovecot = Dovecot::start(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    std::fs::write(dir.path().join("bob.pw"), format!("{bob_password}\n")).unwrap();
    let port = dovecot.port();
    let config = common::imap_config(
        &db,
        dir.path(),
        &format!(
            "    mailboxes: [bob-imap]\nmailboxes:\n  - id: alice-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    username: alice\n    password_file: alice.pw\n    poll_interval: 1h\n  - id: bob-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    username: bob\n    password_file: bob.pw\n"
        ),
    )
    .await;
    let lead = common::acme_lead;
    common::add_leads(&db.store, &[lead("sara@acme.example"), lead("gone@acme.example")]).await;
    Env {
        db,
        dovecot,
        config,
        _dir: dir,
    }
}

async fn tasks(e: &Env) -> Vec<MailboxTask> {
    mailbox_tasks(&e.config, &e.db.store).await.unwrap().0
}

async fn count(e: &Env, kind: &str) -> i64 {
    common::count_kind(&e.db.store, kind).await
}

/// Sent mail to a lead, the lead's reply, a newsletter, a colleague's note.
fn seed_alice(d: &Dovecot) {
    let mut imap = ImapSetup::login(d.port(), "alice", "alice-pw");
    for i in 0..3 {
        imap.append(
            "Sent",
            &message(
                &format!("out{i}@example.com"),
                "alice@example.com",
                "sara@acme.example",
                "Proposal",
                "",
            ),
        );
    }
    imap.append(
        "INBOX",
        &message(
            "reply0@acme.example",
            "Sara <sara@acme.example>",
            "alice@example.com",
            "Re: Proposal",
            "In-Reply-To: <out0@example.com>\r\nReferences: <out0@example.com>\r\n",
        ),
    );
    imap.append(
        "INBOX",
        &message(
            "news@vendor.example",
            "news@vendor.example",
            "alice@example.com",
            "News",
            "List-Id: <n.vendor.example>\r\n",
        ),
    );
    imap.append(
        "INBOX",
        &message("int@example.com", "dave@example.com", "alice@example.com", "Lunch?", ""),
    );
    imap.logout();
}

store_tests!(
    backfill_then_restart_fetches_nothing_again,
    uidvalidity_change_creates_no_duplicates,
    wrong_password_stops_only_that_mailbox,
    idle_pushes_new_mail,
    malformed_messages_never_stall_the_folder,
    dropped_connection_recovers_without_duplicates,
    a_bounce_names_a_lead_created_earlier_in_the_same_backfill,
    a_backfill_searches_its_window_a_slice_at_a_time,
    past_a_slice_wholly_inside_the_window_a_backfill_fetches_ranges_without_searching,
);

async fn backfill_then_restart_fetches_nothing_again(db: TestDb) {
    let e = env(db, "bob-pw").await;
    seed_alice(&e.dovecot);
    let t = tasks(&e).await;
    let stats = t[0].sync_once().await.unwrap();
    assert_eq!(stats.seen, 6);
    assert_eq!(count(&e, "email_sent").await, 3);
    assert_eq!(count(&e, "reply_received").await, 1);
    assert_eq!(
        count(&e, "email_received").await,
        0,
        "newsletter and colleague mail are not activities"
    );
    let fetches = e.dovecot.count_commands("alice", "FETCH");
    assert!(fetches >= 2, "one FETCH per folder at least, saw {fetches}");
    // The log shows no message was flagged \Seen by Rapport (BODY.PEEK only).
    assert!(
        !e.dovecot.log().contains("flag_change"),
        "Rapport must not change flags"
    );

    // A new process (new tasks, same database) fetches nothing it already has.
    let t = tasks(&e).await;
    let stats = t[0].sync_once().await.unwrap();
    assert_eq!(stats.seen, 0);
    assert_eq!(
        e.dovecot.count_commands("alice", "FETCH"),
        fetches,
        "no message fetched twice"
    );
    let explained = e.db.store.explain_message("<reply0@acme.example>").await.unwrap();
    assert_eq!(explained.len(), 1);
    assert!(
        explained[0].reason.contains("answers <out0@example.com>"),
        "{:?}",
        explained[0]
    );
    let news = e.db.store.explain_message("news@vendor.example").await.unwrap();
    assert!(news[0].reason.contains("bulk"), "{:?}", news[0]);
}

async fn uidvalidity_change_creates_no_duplicates(db: TestDb) {
    let e = env(db, "bob-pw").await;
    seed_alice(&e.dovecot);
    tasks(&e).await[0].sync_once().await.unwrap();
    let before = e.db.store.status_counts().await.unwrap().activities;
    let old = e.db.store.cursor("alice-imap", "INBOX").await.unwrap().unwrap();
    let new_validity = e.dovecot.bump_uidvalidity("alice", "INBOX");
    assert_ne!(Some(i64::from(new_validity)), old.validity);
    let stats = tasks(&e).await[0].sync_once().await.unwrap();
    assert_eq!(stats.seen, 3, "the INBOX is read again");
    assert_eq!(
        e.db.store.status_counts().await.unwrap().activities,
        before,
        "no duplicates"
    );
    let cur = e.db.store.cursor("alice-imap", "INBOX").await.unwrap().unwrap();
    assert_eq!(cur.validity, Some(i64::from(new_validity)));
}

async fn wrong_password_stops_only_that_mailbox(db: TestDb) {
    let e = env(db, "not-bobs-password").await;
    seed_alice(&e.dovecot);
    let t = tasks(&e).await;
    let err = t[1].sync_once().await.unwrap_err();
    assert!(err.is_auth(), "{err:#}");
    assert!(
        !format!("{err:#}").contains("not-bobs-password"),
        "the password never appears in errors"
    );
    t[0].sync_once().await.unwrap();
    assert_eq!(count(&e, "email_sent").await, 3);

    // Run as the daemon does: bob's task records auth_failed and stops; alice's keeps going.
    let cancel = tokio_util::sync::CancellationToken::new();
    let bob = tasks(&e).await.remove(1);
    tokio::time::timeout(Duration::from_secs(60), bob.run(cancel.clone()))
        .await
        .expect("an auth failure ends the task");
    let health = e.db.store.health().await.unwrap();
    let bob = health.iter().find(|h| h.source_id == "bob-imap").unwrap();
    assert_eq!(bob.state, "auth_failed");
    assert!(
        bob.last_error.as_deref().unwrap_or("").contains("refused the login"),
        "{bob:?}"
    );
}

async fn idle_pushes_new_mail(db: TestDb) {
    let e = env(db, "bob-pw").await;
    seed_alice(&e.dovecot);
    let alice = tasks(&e).await.remove(0);
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(alice.run(cancel.clone()));
    // Wait for the first pass; the new mail may arrive before or after IDLE starts.
    wait_for(|| async {
        e.db.store
            .health()
            .await
            .unwrap()
            .iter()
            .any(|h| h.source_id == "alice-imap" && h.state == "ok")
    })
    .await;
    let before = count(&e, "reply_received").await;
    let mut imap = ImapSetup::login(e.dovecot.port(), "alice", "alice-pw");
    imap.append(
        "INBOX",
        &message(
            "reply1@acme.example",
            "sara@acme.example",
            "alice@example.com",
            "Re: Proposal",
            "In-Reply-To: <out1@example.com>\r\n",
        ),
    );
    imap.logout();
    // The poll interval is an hour: only IDLE can bring this in.
    wait_for(|| async { count(&e, "reply_received").await > before }).await;
    cancel.cancel();
    handle.await.unwrap();
}

async fn malformed_messages_never_stall_the_folder(db: TestDb) {
    let e = env(db, "bob-pw").await;
    let mut imap = ImapSetup::login(e.dovecot.port(), "alice", "alice-pw");
    imap.append("INBOX", b"\x00\x01 not a message at all\r\n");
    imap.append(
        "INBOX",
        b"Subject: caf\xe9 \xff\xfe\r\nFrom: Sara <sara@acme.example>\r\nTo: alice@example.com\r\n\r\nx\r\n",
    );
    let long_refs = "<r@acme.example> ".repeat(2000);
    imap.append(
        "INBOX",
        format!(
            "From: sara@acme.example\r\nTo: alice@example.com\r\nReferences: {long_refs}\r\nSubject: big\r\n\r\nx\r\n"
        )
        .as_bytes(),
    );
    imap.append(
        "INBOX",
        &message("ok@acme.example", "sara@acme.example", "alice@example.com", "fine", ""),
    );
    imap.logout();
    let stats = tasks(&e).await[0].sync_once().await.unwrap();
    assert_eq!(stats.seen, 4);
    assert_eq!(
        count(&e, "email_received").await,
        3,
        "8-bit junk and missing Message-IDs still count"
    );
    let cursor = e.db.store.cursor("alice-imap", "INBOX").await.unwrap().unwrap();
    assert_eq!(cursor.last_uid, Some(4), "the cursor passed every message");
    assert_eq!(tasks(&e).await[0].sync_once().await.unwrap().seen, 0);
}

async fn dropped_connection_recovers_without_duplicates(db: TestDb) {
    let e = env(db, "bob-pw").await;
    let n = 3000;
    let written = e.dovecot.write_maildir_messages(
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
    let t = Arc::new(tasks(&e).await.remove(0));
    let syncing = {
        let t = t.clone();
        tokio::spawn(async move { t.sync_once().await })
    };
    // Kill the server's imap process while the backfill runs (or just after: either way the
    // next passes must converge on exactly one activity per message).
    wait_for(|| async { e.dovecot.count_commands("alice", "SEARCH") > 0 }).await;
    e.dovecot.kill_imap_processes();
    let _ = syncing.await.unwrap();
    for _ in 0..5 {
        if t.sync_once().await.is_ok() {
            break;
        }
    }
    assert_eq!(count(&e, "email_received").await, n as i64);
    assert_eq!(t.sync_once().await.unwrap().seen, 0);
}

/// A backfill stores the batches that are already waiting in one transaction, but a batch that
/// created leads is committed before the next is decided: a bounce in the third batch must
/// find the lead the first message created (a new address at a known company), and mark it.
async fn a_bounce_names_a_lead_created_earlier_in_the_same_backfill(db: TestDb) {
    let e = env(db, "bob-pw").await;
    let n = 2500;
    let bounce: &[u8] = b"Message-ID: <dsn1@mx.example>\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example>\r\nTo: alice@example.com\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nDate: Mon, 23 Nov 2026 11:00:00 +0000\r\nAuto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
         Final-Recipient: rfc822; new@acme.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b1--\r\n";
    let messages = (0..n).map(|i| match i {
        0 => message(
            "first@example.com",
            "alice@example.com",
            "new@acme.example",
            "Hello",
            "",
        ),
        i if i == n - 1 => bounce.to_vec(),
        i => message(
            &format!("bulk{i}@acme.example"),
            "sara@acme.example",
            "alice@example.com",
            "hi",
            "",
        ),
    });
    assert_eq!(e.dovecot.write_maildir_messages("alice", None, messages), n);
    let stats = tasks(&e).await[0].sync_once().await.unwrap();
    assert_eq!(stats.seen, n);
    assert_eq!(count(&e, "email_sent").await, 1);
    assert_eq!(count(&e, "email_received").await, n as i64 - 2);
    assert_eq!(
        count(&e, "bounce").await,
        1,
        "the bounce names a lead the backfill created"
    );
    let lead = e.db.store.lead_by_email("new@acme.example").await.unwrap();
    assert!(
        lead.expect("a lead created by domain").bounced_at.is_some(),
        "the bounce marked the new lead"
    );
    assert_eq!(
        e.db.store
            .cursor("alice-imap", "INBOX")
            .await
            .unwrap()
            .unwrap()
            .last_uid,
        Some(n as i64)
    );
}

/// Polls `cond` until it holds; fails after a minute (generous: this checks behaviour, not speed).
/// A backfill finds the messages inside its window with one `UID SEARCH … SINCE` per slice of
/// UIDs, and fetches exactly those: here every fifth message is older than the window (its
/// INTERNALDATE, the file's time, set back 200 days before the store's clock).
async fn a_backfill_searches_its_window_a_slice_at_a_time(db: TestDb) {
    let e = env(db, "bob-pw").await;
    let n: usize = 5000;
    write_inbox(&e, n as u32);
    date_messages(
        &e,
        (1..=n as u32).step_by(5),
        e.db.store.now() - chrono::Duration::days(200),
    );

    let t = tasks(&e).await.remove(0);
    let stats = t.sync_once().await.unwrap();
    let inside = n - n.div_ceil(5);
    assert_eq!(stats.seen, inside);
    assert_eq!(count(&e, "email_received").await, inside as i64);
    let searches: Vec<String> = e
        .dovecot
        .imap_commands()
        .into_iter()
        .filter(|c| c.user == "alice" && c.name == "SEARCH" && c.args.contains("SINCE"))
        .map(|c| c.args)
        .collect();
    assert!(searches.len() >= 3, "{searches:?}");
    assert!(searches[0].starts_with("UID 1:"), "{searches:?}");
    // Exactly the messages inside the window were fetched (the old ones have the UIDs 1, 6,
    // 11, …), and the cursor is past them all.
    let mut fetched: Vec<u32> = Vec::new();
    for c in e.dovecot.imap_commands() {
        if c.user == "alice" && c.name == "FETCH" && c.args.contains("HEADER.FIELDS") {
            let set = c.args.split_whitespace().next().unwrap();
            for range in set.split(',') {
                let (a, b) = range.split_once(':').unwrap_or((range, range));
                fetched.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap());
            }
        }
    }
    fetched.sort_unstable();
    let expected: Vec<u32> = (1..=n as u32).filter(|u| (u - 1) % 5 != 0).collect();
    assert_eq!(fetched, expected);
    let cursor = e.db.store.cursor("alice-imap", "INBOX").await.unwrap().unwrap();
    assert_eq!(cursor.last_uid, Some(n as i64));
    assert_eq!(t.sync_once().await.unwrap().seen, 0);
}

/// Writes `n` messages from a lead into alice's INBOX (UIDs 1 to `n` once Dovecot reads it).
fn write_inbox(e: &Env, n: u32) {
    let messages = (0..n).map(|i| {
        message(
            &format!("m{i}@acme.example"),
            "sara@acme.example",
            "alice@example.com",
            "hi",
            "",
        )
    });
    assert_eq!(e.dovecot.write_maildir_messages("alice", None, messages), n as usize);
}

/// Sets the INTERNALDATE (the Maildir file's time) of the messages with the given UIDs of
/// alice's INBOX, written by `write_maildir_messages` (file names sort in UID order).
fn date_messages(e: &Env, uids: impl IntoIterator<Item = u32>, at: chrono::DateTime<chrono::Utc>) {
    let mut files: Vec<_> = std::fs::read_dir(e.dovecot.maildir("alice").join("cur"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    for uid in uids {
        let file = std::fs::File::options()
            .write(true)
            .open(&files[uid as usize - 1])
            .unwrap();
        file.set_modified(at.into()).unwrap();
    }
}

/// Once a searched slice turns out to hold only messages inside the window, the rest of the
/// folder is fetched in ranges of UIDs with no `UID SEARCH … SINCE` (which costs the server a
/// look at every message's date), and a message outside the window is dropped by its
/// INTERNALDATE; one too close to the window's first day to tell is asked of the server. A
/// range with many old messages goes back to searching. Whichever way, exactly the messages
/// the server counts inside the window are recorded.
async fn past_a_slice_wholly_inside_the_window_a_backfill_fetches_ranges_without_searching(db: TestDb) {
    use rapport::sources::mail::verify::verify_mailbox;
    let e = env(db, "bob-pw").await;
    let n: u32 = 8000;
    write_inbox(&e, n);
    let now = e.db.store.now();
    let old = now - chrono::Duration::days(200);
    // The window's first day, as the backfill (90 days) names it to the server.
    let first_day = (now - chrono::Duration::days(90))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    // Below the window; the first slice (1:2000) is then not wholly inside it.
    date_messages(&e, 1..=500, old);
    // Inside the ranges: a stray old message, two near the first day, then a whole range of
    // old mail (a batch with nothing to store).
    date_messages(&e, [4500], old);
    date_messages(&e, [5000], first_day + chrono::Duration::hours(6));
    date_messages(&e, [5001], first_day - chrono::Duration::hours(12));
    date_messages(&e, 6001..=7000, old);

    let t = tasks(&e).await.remove(0);
    let stats = t.sync_once().await.unwrap();

    let searches: Vec<String> = e
        .dovecot
        .imap_commands()
        .into_iter()
        .filter(|c| c.user == "alice" && c.name == "SEARCH" && c.args.contains("SINCE"))
        .map(|c| c.args.split(" SINCE").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        searches,
        [
            "UID 1:2000",
            "UID 2001:4000",
            // The two messages near the window's first day, each asked of the server with the
            // range it came in.
            "UID 5000",
            "UID 5001",
            // After the range 6001:7000, all of it old.
            "UID 7001:8000"
        ]
    );
    let fetched: Vec<String> = e
        .dovecot
        .imap_commands()
        .into_iter()
        .filter(|c| c.user == "alice" && c.name == "FETCH" && c.args.contains("HEADER.FIELDS"))
        .map(|c| c.args.split_whitespace().next().unwrap().to_owned())
        .collect();
    for range in ["4001:5000", "5001:6000", "6001:7000"] {
        assert!(fetched.iter().any(|f| f == range), "{range} not in {fetched:?}");
    }

    // Exactly the messages the server counts inside the window were recorded.
    let checks = verify_mailbox(&t.config, &e.db.store, now).await.unwrap();
    let inbox = checks.iter().find(|c| c.folder == "INBOX").unwrap();
    assert!(inbox.missed.is_empty() && inbox.pending == 0, "{inbox:?}");
    assert_eq!(inbox.seen, inbox.on_server);
    let recorded = e.db.store.seen_keys("alice-imap", "INBOX").await.unwrap();
    assert_eq!(recorded.len(), inbox.on_server, "nothing outside the window recorded");
    assert_eq!(stats.seen, inbox.on_server);
    // 500 + 1 + 1000 old ones outside; of the two near the first day, the server counts the
    // one dated six hours into it (and not the one twelve hours before it, in any zone it may
    // use within eleven hours of UTC).
    assert_eq!(inbox.on_server, n as usize - 1501 - 1);
    assert_eq!(count(&e, "email_received").await, inbox.on_server as i64);
    let cursor = e.db.store.cursor("alice-imap", "INBOX").await.unwrap().unwrap();
    assert_eq!(cursor.last_uid, Some(i64::from(n)));
    assert_eq!(t.sync_once().await.unwrap().seen, 0);
}

async fn wait_for<F, Fut>(cond: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

store_tests!(verify_names_messages_the_cursor_skipped);

async fn verify_names_messages_the_cursor_skipped(db: TestDb) {
    use rapport::sources::mail::verify::verify_mailbox;
    let e = env(db, "bob-pw").await;
    seed_alice(&e.dovecot);
    let alice = tasks(&e).await.remove(0);
    alice.sync_once().await.unwrap();
    let checks = verify_mailbox(&alice.config, &e.db.store, e.db.store.now())
        .await
        .unwrap();
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert!(
        checks
            .iter()
            .all(|c| c.missed.is_empty() && c.pending == 0 && c.seen == c.on_server),
        "{checks:?}"
    );

    // Two new messages: first only pending; then a cursor that jumped past them (the bug verify
    // exists to catch) makes them missed.
    let mut imap = ImapSetup::login(e.dovecot.port(), "alice", "alice-pw");
    imap.append(
        "INBOX",
        &message("late1@acme.example", "sara@acme.example", "alice@example.com", "a", ""),
    );
    imap.append(
        "INBOX",
        &message("late2@acme.example", "sara@acme.example", "alice@example.com", "b", ""),
    );
    imap.logout();
    let inbox = |checks: &[rapport::sources::mail::verify::FolderCheck]| {
        checks.iter().find(|c| c.folder == "INBOX").cloned().unwrap()
    };
    let checks = verify_mailbox(&alice.config, &e.db.store, e.db.store.now())
        .await
        .unwrap();
    assert_eq!(inbox(&checks).pending, 2);
    assert!(inbox(&checks).missed.is_empty());
    let mut cursor = e.db.store.cursor("alice-imap", "INBOX").await.unwrap().unwrap();
    cursor.last_uid = Some(cursor.last_uid.unwrap() + 2);
    let mut tx = e.db.store.begin().await.unwrap();
    tx.put_cursor(&cursor, e.db.store.now()).await.unwrap();
    tx.commit().await.unwrap();
    let checks = verify_mailbox(&alice.config, &e.db.store, e.db.store.now())
        .await
        .unwrap();
    assert_eq!(inbox(&checks).missed, ["UID 4", "UID 5"]);
}

store_tests!(misnamed_folders_and_drafts_do_not_stop_or_count);

async fn misnamed_folders_and_drafts_do_not_stop_or_count(db: TestDb) {
    let mut e = env(db, "bob-pw").await;
    seed_alice(&e.dovecot);
    let mut imap = ImapSetup::login(e.dovecot.port(), "alice", "alice-pw");
    imap.append_with_flags(
        "Sent",
        "\\Draft",
        &message(
            "draft1@example.com",
            "alice@example.com",
            "sara@acme.example",
            "Unsent",
            "",
        ),
    );
    imap.logout();
    if let rapport::config::MailboxSource::Imap(i) = &mut e.config.mailboxes[0].source {
        i.folders = vec!["Sent Items".into(), "Sent".into(), "INBOX".into()];
    }
    let stats = tasks(&e).await[0].sync_once().await.unwrap();
    assert_eq!(
        stats.seen, 7,
        "Sent and INBOX synced although `Sent Items` does not exist"
    );
    assert_eq!(count(&e, "email_sent").await, 3, "the draft is not a sent email");
    let draft = e.db.store.explain_message("draft1@example.com").await.unwrap();
    assert!(draft[0].reason.contains("draft"), "{:?}", draft[0]);
}

/// Rapport reads the answers to UID SEARCH and UID FETCH itself, on the connection async-imap
/// uses for everything else: both must read the same values, and each must find the
/// connection in order after the other, also when the server adds untagged data of its own.
#[tokio::test]
async fn own_reader_and_async_imap_share_the_connection() {
    use futures_util::TryStreamExt;
    use rapport::config::MailboxSource;
    use rapport::sources::mail::imap;

    let d = Dovecot::start(&[("alice", "alice-pw")]);
    seed_alice(&d);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    let yaml = format!(
        "database: {{url: \"sqlite::memory:\"}}\ninternal_domains: [example.com]\nreps:\n  - {{id: alice, name: A, email: alice@example.com, mailboxes: [alice-imap]}}\nmailboxes:\n  - {{id: alice-imap, kind: imap, host: 127.0.0.1, port: {}, tls: none, username: alice, password_file: alice.pw}}\n",
        d.port()
    );
    let path = dir.path().join("rapport.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let MailboxSource::Imap(cfg) = &config.mailboxes[0].source else {
        panic!("not IMAP")
    };

    let mut s = imap::connect(cfg).await.unwrap();
    s.select("Sent").await.unwrap();
    let ours = imap::uid_search(&mut s, "ALL").await.unwrap();
    let mut theirs: Vec<u32> = s.uid_search("ALL").await.unwrap().into_iter().collect();
    theirs.sort_unstable();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 3);

    let set = imap::uid_set(&ours);
    let fetched = imap::uid_fetch(&mut s, &set, &imap::fetch_items()).await.unwrap();
    let theirs: Vec<_> = s
        .uid_fetch(&set, imap::fetch_items())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(fetched.len(), theirs.len());
    for (m, f) in fetched.messages().iter().zip(&theirs) {
        assert_eq!(Some(m.uid), f.uid);
        assert!(!m.broken);
        let section = fetched.section(m).unwrap();
        assert_eq!(Some(section), f.header());
        assert!(String::from_utf8_lossy(section).contains("Subject: Proposal"));
        assert_eq!(m.internal_date(), f.internal_date());
        assert!(m.internal_date().is_some());
        assert_eq!(
            m.draft,
            f.flags().any(|fl| matches!(fl, async_imap::types::Flag::Draft))
        );
    }

    // Mail delivered meanwhile: the server announces it (untagged EXISTS and RECENT) in the
    // answer to a later command, whoever reads it.
    let mut other = ImapSetup::login(d.port(), "alice", "alice-pw");
    other.append(
        "Sent",
        &message("late@example.com", "alice@example.com", "sara@acme.example", "Late", ""),
    );
    let subjects = imap::uid_fetch(&mut s, "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await
        .unwrap();
    assert!((3..=4).contains(&subjects.len()), "{}", subjects.len());
    s.noop().await.unwrap();
    assert_eq!(imap::uid_search(&mut s, "ALL").await.unwrap().len(), 4);
    other.append(
        "Sent",
        &message(
            "later@example.com",
            "alice@example.com",
            "sara@acme.example",
            "Later",
            "",
        ),
    );
    s.noop().await.unwrap();
    let subjects = imap::uid_fetch(&mut s, "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await
        .unwrap();
    assert_eq!(subjects.len(), 5);
    let last = subjects.messages().last().unwrap();
    assert_eq!(subjects.section(last), Some(&b"Subject: Later\r\n\r\n"[..]));

    // A command the server refuses is an error, and the connection stays usable.
    let refused = imap::uid_fetch(&mut s, "1:*", "(NOSUCHITEM)").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(imap::uid_search(&mut s, "ALL").await.unwrap().len(), 5);
    s.select("INBOX").await.unwrap();
    s.logout().await.unwrap();
}
