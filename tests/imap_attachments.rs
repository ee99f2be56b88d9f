//! Attachment names from IMAP BODYSTRUCTURE (no body is fetched) reach the activity and make
//! a sent mail a proposal under the targets' attachment rules. Against a real Dovecot, on
//! SQLite and PostgreSQL.

mod common;

use std::path::Path;

use chrono::{DateTime, Utc};
use common::TestDb;
use common::dovecot::{Dovecot, ImapSetup};
use rapport::daemon::mailbox_tasks;
use rapport::report::progress::{RepFilter, progress};
use rapport::store::RepGroup;
use rapport::targets::{PeriodKind, Targets};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A sent mail with three attachments, their names written three ways: plain, RFC 2231
/// (`filename*`, percent-encoded UTF-8) and an RFC 2047 encoded word in the type's `name`.
fn with_attachments(id: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}>\r\nFrom: alice@example.com\r\nTo: sara@acme.example\r\nSubject: As promised\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n\
         --b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"Q1-Proposal.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
         --b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''Offerte%20K%C3%B6ln.pdf\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
         --b1\r\nContent-Type: application/pdf; name=\"=?utf-8?q?Angebot_=C3=9Cbersicht.pdf?=\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
         --b1--\r\n"
    )
    .into_bytes()
}

store_tests!(attachment_names_come_from_bodystructure);

async fn attachment_names_come_from_bodystructure(db: TestDb) {
    db.clock.set(utc("2026-11-29T12:00:00Z"));
    let dovecot = Dovecot::start(&[("alice", "alice-pw")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    let port = dovecot.port();
    let config = common::imap_config(
        &db,
        dir.path(),
        &format!(
            "mailboxes:\n  - id: alice-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    username: alice\n    password_file: alice.pw\n    poll_interval: 1h\n    folders: [Sent]\n"
        ),
    )
    .await;
    common::add_leads(&db.store, &[common::acme_lead("sara@acme.example")]).await;
    let mut imap = ImapSetup::login(port, "alice", "alice-pw");
    // Received when they were written (their Date headers), whenever the test runs: the
    // report below looks at November 2026.
    let written = "23-Nov-2026 10:00:00 +0000";
    imap.append_dated("Sent", written, &with_attachments("att1@example.com"));
    imap.append_dated(
        "Sent",
        written,
        &common::message(
            "plain@example.com",
            "alice@example.com",
            "sara@acme.example",
            "Hello",
            "",
        ),
    );
    imap.logout();

    let (tasks, _) = mailbox_tasks(&config, &db.store).await.unwrap();
    let stats = tasks[0].sync_once().await.unwrap();
    assert_eq!(stats.seen, 2);
    assert!(
        fetched_structure_not_bodies(&dovecot),
        "only header fields and BODYSTRUCTURE may be fetched:\n{}",
        dovecot.log()
    );

    let reps = vec!["alice".to_string()];
    let group = RepGroup {
        reps: &reps,
        from: utc("2026-11-01T00:00:00Z"),
        to: utc("2026-12-01T00:00:00Z"),
    };
    let sent = db.store.proposal_candidates(&[group], &[]).await.unwrap();
    assert_eq!(sent.len(), 1, "only the mail with attachments is a candidate");
    assert_eq!(
        sent[0].attachments(),
        ["Q1-Proposal.pdf", "Offerte Köln.pdf", "Angebot Übersicht.pdf"]
    );

    // The targets' attachment rule makes it a proposal; the plain mail is not one.
    let targets = Targets::from_str(
        Path::new("t.yaml"),
        "proposals:\n  attachment_patterns: [\"*proposal*.pdf\"]\ntargets:\n  - rep: alice\n    period: month\n    goals: {proposals_sent: 2, emails_sent: 5}\n",
        &config,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rows = progress(
        &db.store,
        &config,
        &targets,
        PeriodKind::Month,
        utc("2026-11-23T12:00:00Z"),
        db.store.now(),
        &RepFilter::Rep("alice".into()),
    )
    .await
    .unwrap();
    let done = |g: &str| rows[0].goals.iter().find(|x| x.goal == g).unwrap().done;
    assert_eq!(done("emails_sent"), 2);
    assert_eq!(done("proposals_sent"), 1);
}

/// Rapport's FETCHes asked for BODYSTRUCTURE and never for a whole message (`BODY.PEEK[]`).
fn fetched_structure_not_bodies(d: &Dovecot) -> bool {
    let fetches: Vec<String> = d
        .imap_commands()
        .into_iter()
        .filter(|c| c.name == "FETCH")
        .map(|c| c.args.to_ascii_uppercase())
        .collect();
    fetches.iter().any(|a| a.contains("BODYSTRUCTURE")) && fetches.iter().all(|a| !a.contains("BODY.PEEK[]"))
}
