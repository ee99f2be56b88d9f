//! Targets and progress on the bundled example: every number `rapport report` shows equals a
//! count made here, independently, straight from the activities table (period bounds computed
//! with chrono-tz, goals mapped by hand, proposals and first contacts recounted in plain SQL).
//! On SQLite and PostgreSQL; plus `rapport log` and `rapport report` through the binary.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use common::TestDb;
use rapport::config::Config;
use rapport::daemon::{RunOptions, run};
use rapport::report::progress::{RepFilter, progress};
use rapport::sources::manual::{ManualEntry, log_activity};
use rapport::targets::{PeriodKind, Targets};
use sqlx::Row;

fn example_config(url: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("sqlite://rapport-example.db", url);
    Config::from_str(&path, &text).unwrap_or_else(|e| panic!("{e}"))
}

async fn load_example(db: &TestDb) -> (Config, Targets) {
    let config = example_config(&db.url);
    run(
        config.clone(),
        Arc::new(db.clock.clone()),
        RunOptions { once: true },
        std::future::pending(),
    )
    .await
    .unwrap();
    let targets = Targets::for_config(&config).unwrap_or_else(|e| panic!("{e}"));
    (config, targets)
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Period bounds, computed independently of the code under test: local midnights of the
/// first day and of the day after the last (no example date has a DST gap at midnight).
fn bounds(kind: PeriodKind, at: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let d = at.with_timezone(&tz).date_naive();
    let (first, next) = match kind {
        PeriodKind::Day => (d, d.succ_opt().unwrap()),
        PeriodKind::Week => {
            let first = d - Duration::days(d.weekday().num_days_from_monday() as i64);
            (first, first + Duration::days(7))
        }
        PeriodKind::Month => {
            let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap();
            let next = if d.month() == 12 {
                NaiveDate::from_ymd_opt(d.year() + 1, 1, 1).unwrap()
            } else {
                NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1).unwrap()
            };
            (first, next)
        }
        PeriodKind::Quarter => {
            let m = (d.month() - 1) / 3 * 3 + 1;
            let first = NaiveDate::from_ymd_opt(d.year(), m, 1).unwrap();
            let next = if m == 10 {
                NaiveDate::from_ymd_opt(d.year() + 1, 1, 1).unwrap()
            } else {
                NaiveDate::from_ymd_opt(d.year(), m + 3, 1).unwrap()
            };
            (first, next)
        }
    };
    let midnight = |day: NaiveDate| {
        tz.with_ymd_and_hms(day.year(), day.month(), day.day(), 0, 0, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    };
    (midnight(first), midnight(next))
}

/// One goal counted straight from the tables.
async fn independent_count(url: &str, rep: &str, goal: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let kind = match goal {
        "emails_sent" => "email_sent",
        "replies_received" => "reply_received",
        "meetings_booked" => "meeting_booked",
        "meetings_held" => "meeting_held",
        "calls" => "call",
        "visits" => "visit",
        "tasks_done" => "task",
        "new_leads_contacted" => return first_contacts(url, rep, from, to).await,
        "proposals_sent" => return proposals(url, rep, from, to).await,
        other => other,
    };
    rows_of(url)
        .await
        .iter()
        .filter(|r| r.rep == rep && r.kind == kind && r.at >= from && r.at < to)
        .count() as i64
}

struct Act {
    id: i64,
    rep: String,
    kind: String,
    at: DateTime<Utc>,
    direction: String,
    subject: Option<String>,
    details: String,
}

const ACTIVITIES: &str =
    "SELECT id, rep_id, kind, occurred_at, direction, subject, CAST(details AS TEXT) AS details FROM activities";
const LINKS: &str = "SELECT activity_id, lead_id FROM activity_leads";

macro_rules! act_of {
    ($r:expr) => {
        Act {
            id: $r.get("id"),
            rep: $r.get("rep_id"),
            kind: $r.get("kind"),
            at: $r.get("occurred_at"),
            direction: $r.get("direction"),
            subject: $r.get("subject"),
            details: $r.get("details"),
        }
    };
}

/// Every activity, read with a connection of the test's own: no SQL of the code under test.
async fn rows_of(url: &str) -> Vec<Act> {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query(ACTIVITIES).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.iter().map(|r| act_of!(r)).collect()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query(ACTIVITIES).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.iter().map(|r| act_of!(r)).collect()
    }
}

async fn links_of(url: &str) -> Vec<(i64, i64)> {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query_as(LINKS).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query_as(LINKS).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    }
}

/// Leads whose first outbound activity (by anyone) is this rep's and falls in the period.
async fn first_contacts(url: &str, rep: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let acts = rows_of(url).await;
    let links = links_of(url).await;
    let by_id: HashMap<i64, &Act> = acts.iter().map(|a| (a.id, a)).collect();
    let mut first: HashMap<i64, (DateTime<Utc>, i64, &str)> = HashMap::new();
    for (activity, lead) in links {
        let a = by_id[&activity];
        if a.direction != "outbound" {
            continue;
        }
        let e = first.entry(lead).or_insert((a.at, a.id, a.rep.as_str()));
        if (a.at, a.id) < (e.0, e.1) {
            *e = (a.at, a.id, a.rep.as_str());
        }
    }
    first
        .values()
        .filter(|(at, _, r)| *r == rep && *at >= from && *at < to)
        .count() as i64
}

/// The example's proposal rules, written out by hand.
async fn proposals(url: &str, rep: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    rows_of(url)
        .await
        .iter()
        .filter(|a| a.rep == rep && a.kind == "email_sent" && a.at >= from && a.at < to)
        .filter(|a| {
            let s = a.subject.clone().unwrap_or_default().to_lowercase();
            let details: serde_json::Value = serde_json::from_str(&a.details).unwrap();
            let attached = details["attachments"]
                .as_array()
                .map(|l| {
                    l.iter().any(|n| {
                        let n = n.as_str().unwrap().to_lowercase();
                        n.contains("proposal") && n.ends_with(".pdf")
                    })
                })
                .unwrap_or(false);
            s.contains("proposal") || s.starts_with("pricing for ") || s.starts_with("angebot ") || attached
        })
        .count() as i64
}

store_tests!(
    report_numbers_equal_an_independent_count,
    manual_activities_count_toward_targets
);

async fn report_numbers_equal_an_independent_count(db: TestDb) {
    db.clock.set(utc("2026-11-20T15:00:00Z"));
    let (config, targets) = load_example(&db).await;
    let now = db.store.now();
    let mut nonzero = HashMap::new();
    for (kind, at) in [
        (PeriodKind::Week, now),
        (PeriodKind::Month, now),
        (PeriodKind::Month, utc("2026-10-15T12:00:00Z")),
        (PeriodKind::Quarter, now),
        (PeriodKind::Day, utc("2026-11-18T12:00:00Z")),
    ] {
        let rows = progress(&db.store, &config, &targets, kind, at, now, &RepFilter::All)
            .await
            .unwrap();
        assert_eq!(rows.len(), 3, "every rep has a row");
        for r in &rows {
            let tz: Tz = r.time_zone.parse().unwrap();
            let (from, to) = bounds(kind, at, tz);
            assert_eq!((r.start, r.end), (from, to), "{} {kind}", r.rep_id);
            assert!(!r.goals.is_empty());
            for g in &r.goals {
                let want = independent_count(&db.url, &r.rep_id, &g.goal, from, to).await;
                assert_eq!(g.done, want, "{} {kind} at {at}: {}", r.rep_id, g.goal);
                *nonzero.entry(g.goal.clone()).or_insert(0) += g.done;
            }
        }
    }
    for goal in [
        "emails_sent",
        "replies_received",
        "new_leads_contacted",
        "proposals_sent",
    ] {
        assert!(
            nonzero.get(goal).copied().unwrap_or(0) > 0,
            "{goal} never counted: {nonzero:?}"
        );
    }

    // Targets: chiara's own month goal replaces her team's; pace is where she should be now.
    let month = progress(
        &db.store,
        &config,
        &targets,
        PeriodKind::Month,
        now,
        now,
        &RepFilter::Rep("chiara".into()),
    )
    .await
    .unwrap();
    assert_eq!(month.len(), 1);
    let sent = month[0].goals.iter().find(|g| g.goal == "emails_sent").unwrap();
    assert_eq!(sent.target, Some(30));
    // 2026-11-20 15:00 UTC is 16:00 in Rome on a Friday: 14 business days done plus 16/24 of
    // the 15th, of 21 in November.
    let share = (14.0 + 16.0 / 24.0) / 21.0;
    assert_eq!(sent.expected, Some((30.0 * share * 10.0_f64).round() / 10.0));
    assert_eq!(month[0].business_days_left, 6);

    // A team filter keeps its reps only.
    let nordics = progress(
        &db.store,
        &config,
        &targets,
        PeriodKind::Week,
        now,
        now,
        &RepFilter::Team("nordics".into()),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = nordics.iter().map(|r| r.rep_id.as_str()).collect();
    assert_eq!(ids, ["alice", "chiara"]);
}

async fn manual_activities_count_toward_targets(db: TestDb) {
    db.clock.set(utc("2026-11-20T15:00:00Z"));
    let (config, targets) = load_example(&db).await;
    let now = db.store.now();
    let before = progress(
        &db.store,
        &config,
        &targets,
        PeriodKind::Month,
        now,
        now,
        &RepFilter::Rep("bob".into()),
    )
    .await
    .unwrap();
    let goal = |rows: &[rapport::report::progress::RepProgress], name: &str| {
        rows[0].goals.iter().find(|g| g.goal == name).unwrap().done
    };
    // A call to a lead nobody has written to yet: a call, and a newly contacted lead.
    let entry = ManualEntry {
        rep_id: "bob".into(),
        kind: rapport::activity::ActivityKind::Call,
        lead: Some("new.person@granite-peak.example".into()),
        occurred_at: utc("2026-11-19T16:00:00Z"),
        note: Some("intro call".into()),
        client_id: Some("crm-42".into()),
    };
    let logged = log_activity(&db.store, &config, &entry).await.unwrap();
    assert!(logged.id.is_some() && logged.lead_id.is_some());
    // The same entry id again adds nothing.
    assert_eq!(log_activity(&db.store, &config, &entry).await.unwrap().id, None);
    // A note has no direction: it is not a contact.
    let note = ManualEntry {
        kind: rapport::activity::ActivityKind::Note,
        lead: Some("other.person@granite-peak.example".into()),
        client_id: None,
        ..entry.clone()
    };
    log_activity(&db.store, &config, &note).await.unwrap();
    let after = progress(
        &db.store,
        &config,
        &targets,
        PeriodKind::Month,
        now,
        now,
        &RepFilter::Rep("bob".into()),
    )
    .await
    .unwrap();
    assert_eq!(goal(&after, "calls"), goal(&before, "calls") + 1);
    assert_eq!(
        goal(&after, "new_leads_contacted"),
        goal(&before, "new_leads_contacted") + 1
    );
    // Refused: a colleague as lead, an unknown rep, a kind no one logs by hand.
    for bad in [
        ManualEntry {
            lead: Some("dave@example.com".into()),
            client_id: None,
            ..entry.clone()
        },
        ManualEntry {
            rep_id: "zed".into(),
            client_id: None,
            ..entry.clone()
        },
        ManualEntry {
            kind: rapport::activity::ActivityKind::EmailSent,
            client_id: None,
            ..entry.clone()
        },
    ] {
        assert!(log_activity(&db.store, &config, &bad).await.is_err(), "{bad:?}");
    }
}

fn rapport_bin(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RAPPORT_LOG", "warn")
        .output()
        .expect("run rapport")
}

/// `rapport log` and `rapport report` through the binary, on a copy of the example config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_report_commands() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let db = dir.path().join("r.db");
    let text = std::fs::read_to_string(root.join("example.yaml"))
        .unwrap()
        .replace("sqlite://rapport-example.db", &format!("sqlite://{}", db.display()))
        .replace("example/", &format!("{}/example/", root.display()));
    let cfg = dir.path().join("rapport.yaml");
    std::fs::write(&cfg, text).unwrap();

    let o = rapport_bin(&cfg, &["run", "--once"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("progress this week:") && out.contains("progress this month:"),
        "{out}"
    );

    let o = rapport_bin(
        &cfg,
        &[
            "log",
            "visit",
            "--rep",
            "alice",
            "--lead",
            "sara.lind@acme-robotics.example",
            "--at",
            "2026-11-18 10:00",
            "--note",
            "site visit",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.starts_with("logged visit #"), "{out}");

    let o = rapport_bin(&cfg, &["log", "call", "--rep", "nobody"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown rep `nobody`"));

    let o = rapport_bin(
        &cfg,
        &[
            "report",
            "--period",
            "month",
            "--rep",
            "alice",
            "--at",
            "2026-11-18",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let goals = rows[0]["goals"].as_array().unwrap();
    let done = |name: &str| {
        goals
            .iter()
            .find(|g| g["goal"] == name)
            .map(|g| g["done"].as_i64().unwrap())
    };
    assert_eq!(rows[0]["first_day"], "2026-11-01");
    assert!(done("emails_sent").unwrap() > 0);
    // The visit is no target of alice's: it shows in the independent table below instead.

    let o = rapport_bin(
        &cfg,
        &["report", "--period", "month", "--at", "2026-11-18", "--format", "csv"],
    );
    assert!(o.status.success());
    let csv = String::from_utf8_lossy(&o.stdout);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("rep,team,period,first_day"));
    let reps: std::collections::BTreeSet<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(reps.into_iter().collect::<Vec<_>>(), ["alice", "bob", "chiara"]);

    let o = rapport_bin(&cfg, &["report", "--period", "month", "--at", "2026-11-18"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("REP"), "{table}");
    assert!(table.contains("proposals_sent"), "{table}");

    let o = rapport_bin(&cfg, &["report", "--period", "fortnight"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown period"));
}
