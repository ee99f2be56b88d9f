//! Backfill throughput against a real Dovecot on loopback: 50,000 generated messages, synced
//! by Rapport into SQLite and PostgreSQL, as a ratio to a raw client measured in the same run
//! that fetches the same header fields over the same IMAP code (async-imap for the session,
//! Rapport's own reader of the FETCH and SEARCH answers), in the same batches, and throws them
//! away.
//! Dovecot is warmed first (its cache then holds the header fields), and the raw client runs
//! right before each Rapport run, twice: finding the messages by `UID SEARCH ALL`, and by the
//! `UID SEARCH SINCE` Rapport's backfill sends (the same messages here, but Dovecot answers
//! that search ten times slower). A last table gives the CPU time each phase used.
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
///
/// `window`: the messages to fetch are found as Rapport's backfill finds them, by `UID SEARCH
/// SINCE` the first day of the backfill window, instead of by `UID SEARCH ALL`. Every message
/// here is inside the window, so both find the same ones; Dovecot takes ten times as long to
/// answer the first (it reads every message's date), before any message can be fetched.
async fn raw_fetch(cfg: &ImapConfig, window: bool) -> Measured {
    let _p = Profiled::phase("raw");
    let start = Timer::start();
    let mut s = imap::connect(cfg).await.unwrap();
    s.select("INBOX").await.unwrap();
    let criteria = if window {
        let since = chrono::Utc::now() - chrono::Duration::days(i64::from(cfg.backfill_days));
        format!("SINCE {}", since.format("%d-%b-%Y"))
    } else {
        "ALL".to_owned()
    };
    let uids = imap::uid_search(&mut s, &criteria).await.unwrap();
    let query = imap::fetch_items();
    let mut n = 0;
    for chunk in uids.chunks(imap::BATCH) {
        let set = imap::uid_set(chunk);
        n += imap::uid_fetch(&mut s, &set, &query).await.unwrap().len();
    }
    assert_eq!(n, N);
    s.logout().await.unwrap();
    start.stop()
}

/// [`raw_fetch`] on a runtime worker, like Rapport's sync.
async fn raw_on_worker(cfg: &ImapConfig, window: bool) -> Measured {
    let cfg = cfg.clone();
    tokio::spawn(async move { raw_fetch(&cfg, window).await })
        .await
        .unwrap()
}

/// Rapport's backfill of `user`'s INBOX into a new database at `db_url`, profiled as `phase`.
async fn rapport_backfill(db_url: &str, user: &str, phase: &str, port: u16, pw: &std::path::Path) -> Measured {
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
    let start = Timer::start();
    // On a runtime worker, as in the daemon (a mailbox task is a spawned task).
    let task = tasks.into_iter().next().unwrap();
    let stats = tokio::spawn(async move { task.sync_once().await })
        .await
        .unwrap()
        .unwrap();
    let measured = start.stop();
    assert_eq!(stats.seen, N);
    assert_eq!(stats.counted, N * 7 / 10);
    measured
}

/// A phase's rate, and the CPU time spent meanwhile: by this process (Rapport, or the raw
/// client; user and system) and by the whole machine (every core, Dovecot included), read
/// from `/proc` in clock ticks of 10 ms. They tell whether a phase waited for the CPU.
#[derive(Clone, Copy)]
struct Measured {
    rate: f64,
    seconds: f64,
    own_cpu: f64,
    machine_cpu: f64,
}

struct Timer {
    wall: Instant,
    own: f64,
    machine: f64,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            own: own_cpu_seconds(),
            machine: machine_busy_seconds(),
        }
    }

    fn stop(self) -> Measured {
        let seconds = self.wall.elapsed().as_secs_f64();
        Measured {
            rate: N as f64 / seconds,
            seconds,
            own_cpu: own_cpu_seconds() - self.own,
            machine_cpu: machine_busy_seconds() - self.machine,
        }
    }
}

/// Clock ticks per second of `/proc` (`USER_HZ`: 100 on every Linux this runs on).
const TICKS: f64 = 100.0;

/// User and system time of this process so far (`/proc/self/stat`, fields 14 and 15).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / TICKS
}

/// Time every core of the machine spent busy so far: all of `/proc/stat`'s first line but
/// idle and iowait.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap())
        .collect();
    (ticks.iter().take(8).sum::<f64>() - ticks[3] - ticks[4]) / TICKS
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

    let cold = raw_on_worker(&cfg, false).await.rate;
    println!("Dovecot, first fetch of the folder (cold cache): {cold:.0} msgs/s");
    println!(
        "\n| backend | raw client | raw client, same SEARCH SINCE | rapport backfill | ratio | ratio to the same SEARCH SINCE |\n|---|---|---|---|---|---|"
    );
    let mut cpu = Vec::new();
    let mut row = |backend: &'static str, raw: Measured, window: Measured, r: Measured| {
        println!(
            "| {backend} | {:.0} msgs/s | {:.0} msgs/s | {:.0} msgs/s | {:.2} | {:.2} |",
            raw.rate,
            window.rate,
            r.rate,
            r.rate / raw.rate,
            r.rate / window.rate
        );
        cpu.push((backend, raw, r));
    };

    let raw = raw_on_worker(&cfg, false).await;
    let window = raw_on_worker(&cfg, true).await;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let r = rapport_backfill(&sqlite_url, "alice", "sqlite", d.port(), &pw).await;
    row("SQLite", raw, window, r);

    // A schema of its own; leftovers are dropped by the next scripts/test or scripts/bench run.
    let pg_url = common::pg_schema_url().await;
    let raw = raw_on_worker(&cfg, false).await;
    let window = raw_on_worker(&cfg, true).await;
    let r = rapport_backfill(&pg_url, "alice", "postgres", d.port(), &pw).await;
    row("PostgreSQL", raw, window, r);

    // The same on a mailbox whose Message-IDs are random (see the top of the file).
    let cold = raw_on_worker(&random_cfg, false).await.rate;
    let raw = raw_on_worker(&random_cfg, false).await;
    let window = raw_on_worker(&random_cfg, true).await;
    let random_url = format!("sqlite://{}", dir.path().join("random.db").display());
    let r = rapport_backfill(&random_url, "bob", "random", d.port(), &pw).await;
    row("SQLite, random Message-IDs", raw, window, r);
    println!("\n(first fetch of that mailbox: {cold:.0} msgs/s)");

    // CPU seconds per phase (10 ms ticks: rough for the raw client's half second). "Cores busy"
    // is the machine's busy time over the phase's wall time: near the number of cores, the
    // phase waited for the CPU.
    println!(
        "\n| phase | raw client: own CPU s / cores busy | Rapport: own CPU s / cores busy | machine CPU, Rapport run / raw client run |\n|---|---|---|---|"
    );
    for (phase, raw, r) in cpu {
        println!(
            "| {phase} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} |",
            raw.own_cpu,
            raw.machine_cpu / raw.seconds,
            r.own_cpu,
            r.machine_cpu / r.seconds,
            r.machine_cpu / raw.machine_cpu
        );
    }
}
