//! Backfill throughput against a real Dovecot on loopback: 50,000 generated messages, synced
//! by Rapport into SQLite and PostgreSQL, as a ratio to a raw client measured in the same run
//! that fetches the same header fields over the same IMAP code (async-imap for the session,
//! Rapport's own reader of the FETCH and SEARCH answers), in the same batches, and throws them
//! away.
//! Dovecot is warmed first (its cache then holds the header fields), and the raw client runs
//! right before each Rapport run.
//!
//! The main rows use Message-IDs that sort in the order the messages arrive (`bench<n>@…`), as
//! the earlier measurements did. Real Message-IDs are random (`<CA…@mail.gmail.com>`): every
//! batch then writes its keys all over the indexes on them instead of at their ends. A last
//! row runs SQLite on a second mailbox of the same messages with random-looking ids.
//!
//! Run with `scripts/bench mail_backfill` (as root: the harness starts Dovecot).
//!
//! Profiling one phase: with `PERF_CTL_FIFO` set to the control FIFO of
//! `perf record -D -1 --control fifo:CTL`, sampling is switched on only while the phase named
//! by `PROFILE_PHASE` runs (`raw`, `sqlite`, `postgres` or `random`; default `sqlite`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::dovecot;

use std::sync::Arc;
use std::time::Instant;

use rapport::clock::SystemClock;
use rapport::config::{Config, ImapConfig, MailboxSource};
use rapport::daemon::mailbox_tasks;
use rapport::sources::mail::imap;
use rapport::store::{LeadColumns, NewLead, Store};

const N: usize = 50_000;
const LEADS: usize = 1_000;

/// The Message-ID of message `i`: in arrival order, or random-looking (a hash of `i`).
fn message_id(i: usize, random: bool) -> String {
    if !random {
        return format!("bench{i}@bench.example");
    }
    // splitmix64: well spread, and the same in every run.
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("CA{z:016x}{:08x}@mail.bench.example", i as u32)
}

fn message(i: usize, random_ids: bool) -> Vec<u8> {
    let lead = i % LEADS;
    let (from, extra) = match i % 10 {
        0 | 1 => ("news@vendor.example".to_string(), "List-Id: <news.vendor.example>\r\n"),
        2 => ("dave@example.com".to_string(), ""),
        _ => (format!("lead{lead}@company{}.example", lead % 50), ""),
    };
    format!(
        "Message-ID: <{}>\r\nFrom: {from}\r\nTo: alice@example.com\r\n\
         Subject: Message {i}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n{extra}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
        message_id(i, random_ids),
        "Some body text that Rapport never downloads. ".repeat(20)
    )
    .into_bytes()
}

fn config(db_url: &str, user: &str, port: u16, pw_file: &std::path::Path) -> Config {
    let yaml = format!(
        "database: {{url: \"{db_url}\"}}\ninternal_domains: [example.com]\nreps:\n  - {{id: alice, name: A, email: alice@example.com, mailboxes: [alice-imap]}}\nmailboxes:\n  - {{id: alice-imap, kind: imap, host: 127.0.0.1, port: {port}, tls: none, username: {user}, password_file: \"{}\", folders: [INBOX]}}\n",
        pw_file.display()
    );
    Config::from_str(std::path::Path::new("/tmp/bench.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn imap_config(c: &Config) -> ImapConfig {
    match &c.mailboxes[0].source {
        MailboxSource::Imap(i) => i.clone(),
        _ => unreachable!(),
    }
}

/// Fetches the same items Rapport fetches ([`imap::fetch_items`]), in the same batches (`imap::BATCH`), and discards them. Timed like
/// Rapport's sync, from connecting to logging out: on this Dovecot a session on the 50,000
/// message Maildir spends several seconds in its first SELECT or FETCH (index refresh), and
/// timing only the fetch would move that cost out of the baseline.
async fn raw_fetch(cfg: &ImapConfig) -> f64 {
    let _p = Profiled::phase("raw");
    let start = Instant::now();
    let mut s = imap::connect(cfg).await.unwrap();
    s.select("INBOX").await.unwrap();
    let uids = imap::uid_search(&mut s, "ALL").await.unwrap();
    let query = imap::fetch_items();
    let mut n = 0;
    for chunk in uids.chunks(imap::BATCH) {
        let set = imap::uid_set(chunk);
        n += imap::uid_fetch(&mut s, &set, &query).await.unwrap().len();
    }
    assert_eq!(n, N);
    s.logout().await.unwrap();
    N as f64 / start.elapsed().as_secs_f64()
}

/// [`raw_fetch`] on a runtime worker, like Rapport's sync.
async fn raw_on_worker(cfg: &ImapConfig) -> f64 {
    let cfg = cfg.clone();
    tokio::spawn(async move { raw_fetch(&cfg).await }).await.unwrap()
}

/// Rapport's backfill of `user`'s INBOX into a new database at `db_url`, profiled as `phase`.
async fn rapport_backfill(db_url: &str, user: &str, phase: &str, port: u16, pw: &std::path::Path) -> f64 {
    let c = config(db_url, user, port, pw);
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
    let (tasks, _) = mailbox_tasks(&c, &store).await.unwrap();
    let _p = Profiled::phase(phase);
    let start = Instant::now();
    // On a runtime worker, as in the daemon (a mailbox task is a spawned task).
    let task = tasks.into_iter().next().unwrap();
    let stats = tokio::spawn(async move { task.sync_once().await })
        .await
        .unwrap()
        .unwrap();
    let rate = N as f64 / start.elapsed().as_secs_f64();
    assert_eq!(stats.seen, N);
    assert_eq!(stats.counted, N * 7 / 10);
    rate
}

/// Sampling switched on for one phase while this lives (see the top of the file).
struct Profiled(Option<std::fs::File>);

impl Profiled {
    fn phase(name: &str) -> Profiled {
        use std::io::Write;
        let wanted = std::env::var("PROFILE_PHASE").unwrap_or_else(|_| "sqlite".into());
        let fifo = std::env::var_os("PERF_CTL_FIFO").filter(|_| wanted == name);
        Profiled(fifo.map(|path| {
            let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.write_all(b"enable\n").unwrap();
            f
        }))
    }
}

impl Drop for Profiled {
    fn drop(&mut self) {
        use std::io::Write;
        if let Some(f) = &mut self.0 {
            let _ = f.write_all(b"disable\n");
        }
    }
}

#[tokio::main]
async fn main() {
    let d = dovecot::Dovecot::start(&[("alice", "pw"), ("bob", "pw")]);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let written = d.write_maildir_messages("alice", None, (0..N).map(|i| message(i, false)));
    assert_eq!(written, N);
    let written = d.write_maildir_messages("bob", None, (0..N).map(|i| message(i, true)));
    assert_eq!(written, N);
    let cfg = imap_config(&config("sqlite://unused", "alice", d.port(), &pw));
    let random_cfg = imap_config(&config("sqlite://unused", "bob", d.port(), &pw));

    let cold = raw_on_worker(&cfg).await;
    println!("Dovecot, first fetch of the folder (cold cache): {cold:.0} msgs/s");
    println!("\n| backend | raw client | rapport backfill | ratio |\n|---|---|---|---|");

    let raw = raw_on_worker(&cfg).await;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let r = rapport_backfill(&sqlite_url, "alice", "sqlite", d.port(), &pw).await;
    println!("| SQLite | {raw:.0} msgs/s | {r:.0} msgs/s | {:.2} |", r / raw);

    // A schema of its own; leftovers are dropped by the next scripts/test or scripts/bench run.
    let pg_url = common::pg_schema_url().await;
    let raw = raw_on_worker(&cfg).await;
    let r = rapport_backfill(&pg_url, "alice", "postgres", d.port(), &pw).await;
    println!("| PostgreSQL | {raw:.0} msgs/s | {r:.0} msgs/s | {:.2} |", r / raw);

    // The same on a mailbox whose Message-IDs are random (see the top of the file).
    let cold = raw_on_worker(&random_cfg).await;
    let raw = raw_on_worker(&random_cfg).await;
    let random_url = format!("sqlite://{}", dir.path().join("random.db").display());
    let r = rapport_backfill(&random_url, "bob", "random", d.port(), &pw).await;
    println!(
        "| SQLite, random Message-IDs | {raw:.0} msgs/s | {r:.0} msgs/s | {:.2} |\n\n(first fetch of that mailbox: {cold:.0} msgs/s)",
        r / raw
    );
}
