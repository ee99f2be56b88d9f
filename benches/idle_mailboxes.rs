//! Resources with 100 mailboxes idle: resident memory and CPU seconds per minute of the
//! process running 100 Rapport mailbox tasks in IDLE, next to the same process holding 100
//! bare async-imap IDLE sessions (the baseline, measured first in the same run). Run with
//! `scripts/bench idle_mailboxes` (as root: the harness starts Dovecot).

#[path = "../tests/common/mod.rs"]
mod common;

use common::dovecot;

use std::sync::Arc;
use std::time::Duration;

use rapport::clock::SystemClock;
use rapport::config::{Config, MailboxSource};
use rapport::daemon::mailbox_tasks;
use rapport::sources::mail::imap;
use rapport::store::Store;

const MAILBOXES: usize = 100;
const WINDOW: Duration = Duration::from_secs(30);

fn rss_kib() -> u64 {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of this process, in clock ticks (100 per second on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// RSS and CPU seconds per minute over the window.
async fn measure() -> (u64, f64) {
    let c0 = cpu_ticks();
    tokio::time::sleep(WINDOW).await;
    let cpu = (cpu_ticks() - c0) as f64 / 100.0 * (60.0 / WINDOW.as_secs_f64());
    (rss_kib(), cpu)
}

#[tokio::main]
async fn main() {
    let users: Vec<(String, String)> = (0..MAILBOXES).map(|i| (format!("rep{i}"), "pw".to_string())).collect();
    let user_refs: Vec<(&str, &str)> = users.iter().map(|(u, p)| (u.as_str(), p.as_str())).collect();
    let d = dovecot::Dovecot::start(&user_refs);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("idle.db").display());
    let mut yaml = format!("database: {{url: \"{db_url}\"}}\ninternal_domains: [example.com]\nreps:\n");
    for i in 0..MAILBOXES {
        yaml.push_str(&format!(
            "  - {{id: rep{i}, name: R{i}, email: rep{i}@example.com, mailboxes: [mb{i}]}}\n"
        ));
    }
    yaml.push_str("mailboxes:\n");
    for i in 0..MAILBOXES {
        yaml.push_str(&format!(
            "  - {{id: mb{i}, kind: imap, host: 127.0.0.1, port: {}, tls: none, username: rep{i}, password_file: \"{}\", poll_interval: 10m}}\n",
            d.port(),
            pw.display()
        ));
        d.write_maildir_messages(
            &format!("rep{i}"),
            None,
            (0..10).map(|j| {
                format!("Message-ID: <m{i}-{j}@acme.example>\r\nFrom: lead{j}@acme.example\r\nTo: rep{i}@example.com\r\nSubject: s\r\n\r\nx\r\n")
                    .into_bytes()
            }),
        );
    }
    let config = Config::from_str(std::path::Path::new("/tmp/idle100.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"));
    let start_rss = rss_kib();

    // Baseline: 100 bare IDLE sessions.
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut bare = Vec::new();
    for mb in &config.mailboxes {
        let MailboxSource::Imap(cfg) = mb.source.clone() else {
            unreachable!()
        };
        let cancel = cancel.clone();
        bare.push(tokio::spawn(async move {
            let mut s = imap::connect(&cfg).await.unwrap();
            s.select("INBOX").await.unwrap();
            let mut idle = s.idle();
            idle.init().await.unwrap();
            let (wait, stop) = idle.wait_with_timeout(Duration::from_secs(600));
            tokio::select! {
                _ = cancel.cancelled() => drop(stop),
                _ = wait => {}
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (bare_rss, bare_cpu) = measure().await;
    cancel.cancel();
    for b in bare {
        let _ = b.await;
    }

    // Rapport: 100 mailbox tasks, synced, then idle.
    let store = Store::connect(&db_url, 8, Arc::new(SystemClock)).await.unwrap();
    store.migrate().await.unwrap();
    store.sync_reps(&config).await.unwrap();
    let tasks = mailbox_tasks(&config, &store).await.unwrap().0;
    let cancel = tokio_util::sync::CancellationToken::new();
    let handles: Vec<_> = tasks.into_iter().map(|t| tokio::spawn(t.run(cancel.clone()))).collect();
    loop {
        let ok = store.health().await.unwrap().iter().filter(|h| h.state == "ok").count();
        if ok == MAILBOXES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, cpu) = measure().await;
    cancel.cancel();
    for h in handles {
        let _ = h.await;
    }
    println!("| what | resident memory | CPU seconds per minute |\n|---|---|---|");
    println!("| process before any session | {} MiB | — |", start_rss / 1024);
    println!(
        "| 100 bare IDLE sessions (baseline) | {} MiB | {bare_cpu:.3} |",
        bare_rss / 1024
    );
    println!(
        "| 100 Rapport mailbox tasks idle (SQLite) | {} MiB | {cpu:.3} |",
        rss / 1024
    );
    println!(
        "(peak resident memory of the whole run: {} MiB)",
        status_field("VmHWM:") / 1024
    );
}
