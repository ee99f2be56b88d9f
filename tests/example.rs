//! The bundled example (config/example.yaml): `run --once` must log exactly what the data's
//! generator says each message is (config/example/expected.json), on SQLite and PostgreSQL,
//! and a second run must add nothing.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::TestDb;
use rapport::config::Config;
use rapport::daemon::{RunOptions, run};
use rapport::sources::mail::maildir::unique_name;

fn example_config(db: &TestDb) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("sqlite://rapport-example.db", &db.url);
    Config::from_str(&path, &text).unwrap_or_else(|e| panic!("{e}"))
}

fn expected() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

store_tests!(example_data_is_logged_exactly_as_generated);

async fn example_data_is_logged_exactly_as_generated(db: TestDb) {
    let config = example_config(&db);
    let clock = Arc::new(db.clock.clone());
    run(
        config.clone(),
        clock.clone(),
        RunOptions { once: true },
        std::future::pending(),
    )
    .await
    .unwrap();
    let exp = expected();

    // Per rep and kind.
    let counts = db.store.count_by_rep_and_kind(None, None).await.unwrap();
    let mut got: HashMap<(String, String), i64> = HashMap::new();
    for c in &counts {
        got.insert((c.rep_id.clone(), c.kind.clone()), c.count);
    }
    let mut want: HashMap<(String, String), i64> = HashMap::new();
    for (rep, kinds) in exp["per_rep"].as_object().unwrap() {
        for (kind, n) in kinds.as_object().unwrap() {
            if n.as_i64().unwrap() > 0 {
                want.insert((rep.clone(), kind.clone()), n.as_i64().unwrap());
            }
        }
    }
    assert_eq!(got, want);

    // Message by message: the decision recorded for each file.
    let mut seen = HashMap::new();
    for rep in ["alice", "bob", "chiara"] {
        for s in db.store.seen_in_mailbox(&format!("{rep}-mail")).await.unwrap() {
            seen.insert((rep.to_string(), s.folder.clone(), s.item_key.clone()), s);
        }
    }
    let messages = exp["messages"].as_array().unwrap();
    assert_eq!(seen.len(), messages.len(), "every file was looked at once");
    for m in messages {
        let rep = m["rep"].as_str().unwrap();
        let file = m["file"].as_str().unwrap();
        let name = unique_name(file.rsplit('/').next().unwrap());
        let key = (
            rep.to_string(),
            m["folder"].as_str().unwrap().to_string(),
            name.to_string(),
        );
        let s = seen.get(&key).unwrap_or_else(|| panic!("{file} was not seen"));
        match m["expected"].as_str() {
            Some(kind) => assert_eq!(s.decision, kind, "{file}: {} / {}", m["why"], s.reason),
            None => assert!(
                s.decision == "skipped" || s.decision == "unreadable",
                "{file} should not count ({}), got {}: {}",
                m["why"],
                s.decision,
                s.reason
            ),
        }
    }

    // Bounces mark the lead, domain matches create leads.
    for a in exp["bounced_addresses"].as_array().unwrap() {
        let lead = db
            .store
            .lead_by_email(a.as_str().unwrap())
            .await
            .unwrap()
            .expect("bounced lead");
        assert!(lead.bounced_at.is_some(), "{a} is marked bounced");
    }
    for a in exp["auto_created_leads"].as_array().unwrap() {
        let lead = db.store.lead_by_email(a.as_str().unwrap()).await.unwrap();
        assert!(lead.is_some(), "{a} was created from its company's domain");
    }

    // Exactly once: a second run over the same mail adds nothing.
    let before = db.store.status_counts().await.unwrap();
    run(config, clock, RunOptions { once: true }, std::future::pending())
        .await
        .unwrap();
    assert_eq!(db.store.status_counts().await.unwrap(), before);
}

store_tests!(daemon_runs_until_shutdown_and_picks_up_new_mail);

async fn daemon_runs_until_shutdown_and_picks_up_new_mail(db: TestDb) {
    // A copy of one rep's Maildir, so new mail can be dropped in while the daemon runs.
    let mail = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example/mail/alice");
    copy_dir(&src, mail.path());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("sqlite://rapport-example.db", &db.url)
        .replace(
            "path: example/mail/alice",
            &format!("path: {}\n    poll_interval: 100ms", mail.path().display()),
        );
    let config = Config::from_str(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(run(
        config,
        Arc::new(db.clock.clone()),
        RunOptions { once: false },
        async {
            let _ = stop_rx.await;
        },
    ));
    let alice_sent = || async {
        db.store
            .count_by_rep_and_kind(None, None)
            .await
            .unwrap()
            .iter()
            .filter(|c| c.rep_id == "alice" && c.kind == "email_sent")
            .map(|c| c.count)
            .sum::<i64>()
    };
    let wait_for = |n: i64| async move {
        for _ in 0..600 {
            if alice_sent().await >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("alice never reached {n} sent messages");
    };
    let exp = expected();
    let sent = exp["per_rep"]["alice"]["email_sent"].as_i64().unwrap();
    wait_for(sent).await;
    std::fs::write(
        mail.path().join(".Sent/cur/1799999999.new.rapport-test:2,S"),
        "Message-ID: <new-while-running@example.com>\r\nFrom: alice@example.com\r\nTo: sara.lind@acme-robotics.example\r\n\
         Subject: Follow-up\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\n\r\nHi Sara\r\n",
    )
    .unwrap();
    wait_for(sent + 1).await;
    stop_tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(15), daemon)
        .await
        .expect("the daemon stops within its shutdown deadline")
        .unwrap()
        .unwrap();
    let health = db.store.health().await.unwrap();
    assert!(
        health.iter().any(|h| h.source_id == "alice-mail" && h.state == "ok"),
        "{health:?}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

store_tests!(privacy_rules_keep_subjects_and_excluded_mail_out);

async fn privacy_rules_keep_subjects_and_excluded_mail_out(db: TestDb) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("sqlite://rapport-example.db", &db.url)
        + "privacy:\n  store_subjects: false\n  exclude_domains: [acme-robotics.example]\n";
    let config = Config::from_str(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    run(
        config,
        Arc::new(db.clock.clone()),
        RunOptions { once: true },
        std::future::pending(),
    )
    .await
    .unwrap();

    let recent = db.store.recent_activities(10_000).await.unwrap();
    assert!(!recent.is_empty());
    assert!(recent.iter().all(|a| a.subject.is_none()), "no subject stored");
    let sara = db
        .store
        .lead_by_email("sara.lind@acme-robotics.example")
        .await
        .unwrap()
        .unwrap();
    assert!(
        db.store.activities_for_lead(sara.id).await.unwrap().is_empty(),
        "excluded domain logged nothing"
    );

    let seen = db.store.seen_in_mailbox("alice-mail").await.unwrap();
    let excluded: Vec<_> = seen.iter().filter(|s| s.reason.contains("privacy")).collect();
    assert!(!excluded.is_empty());
    assert!(
        excluded.iter().all(|s| s.headers.is_none()),
        "nothing kept about excluded mail"
    );
    // Other mail with an external participant not linked to a lead keeps its header fields
    // (without the subject) for matching again later.
    let kept: Vec<_> = seen.iter().filter_map(|s| s.headers.as_ref()).collect();
    assert!(!kept.is_empty());
    assert!(kept.iter().all(|k| k.0["subject"].is_null()), "{kept:?}");
    assert!(kept.iter().all(|k| k.0["from"][0].is_string()), "{kept:?}");
}

store_tests!(importing_leads_later_links_mail_already_seen);

async fn importing_leads_later_links_mail_already_seen(db: TestDb) {
    // First the mail, with no leads at all: nothing counts.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("sqlite://rapport-example.db", &db.url);
    let without_leads = Config::from_str(&path, &text.replace("lead_files:\n  - example/leads.csv\n", "")).unwrap();
    let clock = Arc::new(db.clock.clone());
    run(
        without_leads,
        clock.clone(),
        RunOptions { once: true },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(db.store.status_counts().await.unwrap().activities, 0);

    // Then the leads: the mail already seen is matched again and counts as if the leads had
    // been there all along.
    let config = Config::from_str(&path, &text).unwrap();
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example/leads.csv");
    rapport::leads::import_file(&db.store, &config, &csv).await.unwrap();
    let linked = rapport::daemon::rematch_seen_mail(&config, &db.store).await.unwrap();
    let exp = expected();
    let mut got = std::collections::BTreeMap::new();
    for c in db.store.count_by_rep_and_kind(None, None).await.unwrap() {
        got.insert((c.rep_id.clone(), c.kind.clone()), c.count);
    }
    eprintln!("GOT {got:?}");
    // Mail only: meetings are matched when their calendar is read, not again after an import.
    let want: i64 = exp["per_rep"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|k| {
            k.as_object()
                .unwrap()
                .iter()
                .filter(|(kind, _)| !kind.starts_with("meeting_"))
                .map(|(_, v)| v.as_i64().unwrap())
        })
        .sum();
    assert_eq!(linked as i64, want);
    let counts = db.store.count_by_rep_and_kind(None, None).await.unwrap();
    for c in &counts {
        assert_eq!(c.count, exp["per_rep"][&c.rep_id][&c.kind].as_i64().unwrap(), "{c:?}");
    }
    // And again: nothing more.
    assert_eq!(rapport::daemon::rematch_seen_mail(&config, &db.store).await.unwrap(), 0);
}
