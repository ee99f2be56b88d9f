//! Sequences: (1) finding due steps with 100,000 live enrollments (1,000 of them due), per
//! claim, on SQLite and PostgreSQL; (2) the send rate of the whole path (claim, exit rules,
//! render, outbox row, SMTP to aiosmtpd, sent + activity) as a ratio to a plain pooled lettre
//! client sending the same messages to the same server in the same run.
//! Run with `scripts/bench sequences`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use common::smtp::SmtpSink;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rapport::clock::SystemClock;
use rapport::config::Config;
use rapport::sequences::engine::Engine;
use rapport::sequences::sender::MailboxSender;
use rapport::store::{LeadColumns, NewLead, Store};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

const ENROLLMENTS: usize = 100_000;
const DUE: usize = 1_000;
const CLAIMS: usize = 500;
const SENDS: usize = 400;

fn config(db_url: &str, dir: &std::path::Path, smtp_port: u16) -> Config {
    let seq_dir = dir.join("sequences");
    std::fs::create_dir_all(&seq_dir).unwrap();
    std::fs::write(
        seq_dir.join("bench.yaml"),
        "name: Bench\nwindow: { start: \"00:00\", end: \"23:59\", days: [mon, tue, wed, thu, fri, sat, sun], jitter: 0s }\nsteps:\n  - email: { subject: \"Hello {{ lead.first_name }}\", body: \"Hi {{ lead.first_name }}, a note from {{ rep.name }} about {{ company.name }}.\" }\n",
    )
    .unwrap();
    let maildir = dir.join("maildir");
    for s in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(s)).unwrap();
    }
    let yaml = format!(
        "database: {{url: \"{db_url}\", max_connections: 4}}\ninternal_domains: [example.com]\nsequences_dir: {}\nreps:\n  - {{id: alice, name: Alice, email: alice@example.com, mailboxes: [alice-mail]}}\nmailboxes:\n  - id: alice-mail\n    kind: maildir\n    path: {}\n    smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, min_gap: 0s, daily_cap: 1000000}}\n",
        seq_dir.display(),
        maildir.display()
    );
    let path = dir.join("rapport.yaml");
    std::fs::write(&path, yaml).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

async fn fill(store: &Store, url: &str, n: usize, due: usize) {
    let leads: Vec<NewLead> = (0..n)
        .map(|i| NewLead {
            email: format!("lead{i}@company{}.example", i % 500),
            name: Some(format!("Lead Number{i}")),
            company_name: Some(format!("Company {}", i % 500)),
            company_domain: Some(format!("company{}.example", i % 500)),
            owner_rep: Some("alice".into()),
            time_zone: None,
            status: None,
            attributes: Default::default(),
        })
        .collect();
    store.upsert_leads(&leads, LeadColumns::all()).await.unwrap();
    let now = Utc::now();
    let past = now - chrono::Duration::hours(1);
    let future = now + chrono::Duration::days(30);
    // Bulk insert straight through SQL: the enroll path is measured in the send part.
    let sql = "INSERT INTO enrollments (sequence_id, sequence_version, lead_id, rep_id, mailbox_id, state, next_step,
            next_due_at, enrolled_at, updated_at)
         SELECT 'bench', $1, id, 'alice', 'alice-mail', 'active', 0,
            CASE WHEN id % $2 = 0 THEN $3 ELSE $4 END, $5, $5 FROM leads";
    let version = "bench-version";
    let every = (n / due) as i64;
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(version)
            .bind(every)
            .bind(past)
            .bind(future)
            .bind(now)
            .execute(&mut c)
            .await
            .unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(version)
            .bind(every)
            .bind(past)
            .bind(future)
            .bind(now)
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("ANALYZE enrollments").execute(&mut c).await.unwrap();
    }
}

async fn due_lookup(name: &str, url: &str) {
    let store = Store::connect(url, 4, Arc::new(SystemClock)).await.unwrap();
    store.migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(url, dir.path(), 1);
    store.sync_reps(&config).await.unwrap();
    let t = Instant::now();
    fill(&store, url, ENROLLMENTS, DUE).await;
    let fill_s = t.elapsed().as_secs_f64();
    let lease = Utc::now() + chrono::Duration::minutes(5);
    let t = Instant::now();
    let mut claimed = 0;
    for _ in 0..CLAIMS {
        if store
            .claim_due("alice-mail", Utc::now(), lease)
            .await
            .unwrap()
            .is_some()
        {
            claimed += 1;
        }
    }
    let per_claim = t.elapsed().as_secs_f64() / CLAIMS as f64;
    let t = Instant::now();
    for _ in 0..CLAIMS {
        let _ = store.next_due("alice-mail").await.unwrap();
    }
    let per_next = t.elapsed().as_secs_f64() / CLAIMS as f64;
    assert_eq!(claimed, CLAIMS);
    println!(
        "{name}: {ENROLLMENTS} enrollments ({DUE} due) filled in {fill_s:.1} s; claim of one due step {:.2} ms; next-due lookup {:.2} ms",
        per_claim * 1e3,
        per_next * 1e3
    );
}

async fn send_rate(name: &str, url: &str) {
    let sink = SmtpSink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(url, dir.path(), sink.port);
    let store = Store::connect(url, 4, Arc::new(SystemClock)).await.unwrap();
    store.migrate().await.unwrap();
    store.sync_reps(&config).await.unwrap();
    let leads: Vec<NewLead> = (0..SENDS)
        .map(|i| NewLead {
            email: format!("send{i}@acme.example"),
            name: Some(format!("Send Lead{i}")),
            company_name: Some("Acme".into()),
            company_domain: Some("acme.example".into()),
            owner_rep: Some("alice".into()),
            time_zone: None,
            status: None,
            attributes: Default::default(),
        })
        .collect();
    store.upsert_leads(&leads, LeadColumns::all()).await.unwrap();
    let engine = Arc::new(Engine::load(Arc::new(config.clone()), store.clone()).unwrap());
    for i in 0..SENDS {
        engine.enroll("bench", &format!("send{i}@acme.example")).await.unwrap();
    }
    let sender = MailboxSender::new(engine.clone(), "alice-mail").unwrap();

    // The baseline: the messages Rapport will send, prebuilt, through a pooled lettre client.
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port)
        .build();
    let messages: Vec<lettre::Message> = (0..SENDS)
        .map(|i| {
            lettre::Message::builder()
                .from("Alice <alice@example.com>".parse().unwrap())
                .to(format!("send{i}@acme.example").parse().unwrap())
                .subject(format!("Hello Send{i}"))
                .body(format!("Hi Send, a note from Alice about Acme. {i}"))
                .unwrap()
        })
        .collect();
    let t = Instant::now();
    for m in &messages {
        transport.send(m.clone()).await.unwrap();
    }
    let raw = SENDS as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let report = sender.run_until_idle(&CancellationToken::new()).await.unwrap();
    let ours = report.sent as f64 / t.elapsed().as_secs_f64();
    assert_eq!(report.sent, SENDS);
    assert_eq!(sink.messages().len(), 2 * SENDS);
    println!(
        "{name}: send rate to aiosmtpd: rapport {ours:.0} msg/s, plain lettre {raw:.0} msg/s, ratio {:.2} ({SENDS} messages each)",
        ours / raw
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", sqlite_dir.path().join("due.db").display());
    due_lookup("SQLite", &sqlite).await;
    let pg = common::pg_schema_url().await;
    due_lookup("PostgreSQL", &pg).await;
    let sqlite2 = format!("sqlite://{}", sqlite_dir.path().join("send.db").display());
    send_rate("SQLite", &sqlite2).await;
    let pg2 = common::pg_schema_url().await;
    send_rate("PostgreSQL", &pg2).await;
}
