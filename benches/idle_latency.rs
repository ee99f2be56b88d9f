//! Push latency: from an APPEND to a committed activity, with Rapport's IMAP IDLE loop, over
//! 200 messages, next to the server's own push delay measured by a bare IDLE client in the same
//! run (APPEND → untagged EXISTS). Run with `scripts/bench idle_latency` (as root: the harness
//! starts Dovecot).

#[path = "../tests/common/mod.rs"]
mod common;

use common::dovecot;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_imap::extensions::idle::IdleResponse;
use rapport::clock::SystemClock;
use rapport::config::{Config, MailboxSource};
use rapport::daemon::mailbox_tasks;
use rapport::sources::mail::imap;
use rapport::store::{LeadColumns, NewLead, Store};

const ROUNDS: usize = 200;

fn message(i: usize) -> Vec<u8> {
    format!(
        "Message-ID: <idle{i}@acme.example>\r\nFrom: sara@acme.example\r\nTo: alice@example.com\r\nSubject: ping {i}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n"
    )
    .into_bytes()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let d = dovecot::Dovecot::start(&[("alice", "pw")]);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("idle.db").display());
    let yaml = format!(
        "database: {{url: \"{db_url}\"}}\ninternal_domains: [example.com]\nreps:\n  - {{id: alice, name: A, email: alice@example.com, mailboxes: [alice-imap]}}\nmailboxes:\n  - {{id: alice-imap, kind: imap, host: 127.0.0.1, port: {}, tls: none, username: alice, password_file: \"{}\", folders: [INBOX], poll_interval: 1h}}\n",
        d.port(),
        pw.display()
    );
    let config = Config::from_str(std::path::Path::new("/tmp/idle.yaml"), &yaml).unwrap();
    let MailboxSource::Imap(cfg) = &config.mailboxes[0].source else {
        unreachable!()
    };
    let mut appender = dovecot::ImapSetup::login(d.port(), "alice", "pw");

    // The server's push delay, seen by a bare IDLE client.
    let mut session = imap::connect(cfg).await.unwrap();
    session.select("INBOX").await.unwrap();
    let mut bare = Vec::new();
    for i in 0..ROUNDS {
        let mut idle = session.idle();
        idle.init().await.unwrap();
        let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(30));
        let t = Instant::now();
        appender.append("INBOX", &message(i));
        let appended = t.elapsed();
        let r = wait.await.unwrap();
        assert!(matches!(r, IdleResponse::NewData(_)), "{r:?}");
        bare.push(t.elapsed().saturating_sub(appended));
        session = idle.done().await.unwrap();
    }
    session.logout().await.unwrap();

    // Rapport: the mailbox task in IDLE; each APPEND waits until its activity is committed.
    let store = Store::connect(&db_url, 4, Arc::new(SystemClock)).await.unwrap();
    store.migrate().await.unwrap();
    store.sync_reps(&config).await.unwrap();
    let lead = NewLead {
        email: "sara@acme.example".into(),
        name: None,
        company_name: None,
        company_domain: Some("acme.example".into()),
        owner_rep: Some("alice".into()),
        time_zone: None,
        status: None,
        attributes: Default::default(),
    };
    store.upsert_leads(&[lead], LeadColumns::all()).await.unwrap();
    let task = mailbox_tasks(&config, &store).await.unwrap().0.remove(0);
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(task.run(cancel.clone()));
    let activities = || async { store.status_counts().await.unwrap().activities };
    while activities().await < ROUNDS as i64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // let it settle into IDLE
    let mut rapport = Vec::new();
    for i in ROUNDS..2 * ROUNDS {
        let t = Instant::now();
        appender.append("INBOX", &message(i));
        let appended = t.elapsed();
        while activities().await <= i as i64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        rapport.push(t.elapsed().saturating_sub(appended));
    }
    cancel.cancel();
    handle.await.unwrap();
    appender.logout();

    let (b50, b99) = (percentile(&mut bare, 0.5), percentile(&mut bare, 0.99));
    let (r50, r99) = (percentile(&mut rapport, 0.5), percentile(&mut rapport, 0.99));
    println!("| what | p50 | p99 |\n|---|---|---|");
    println!("| bare IDLE client: APPEND → EXISTS | {b50:.1?} | {b99:.1?} |");
    println!("| rapport: APPEND → activity committed (SQLite) | {r50:.1?} | {r99:.1?} |");
    println!(
        "| difference | {:.1?} | {:.1?} |",
        r50.saturating_sub(b50),
        r99.saturating_sub(b99)
    );
}
