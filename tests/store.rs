//! Store behaviour, each test on SQLite and on PostgreSQL.

mod common;

use chrono::Duration;
use common::{TestDb, test_config};
use rapport::activity::{ActivityKind, Direction, NewActivity, SourceKind};
use rapport::store::{
    Backend, HealthState, Lead, LeadColumns, NewLead, NewSeenMail, RepGroup, Store, SyncCursor, Tx, UpsertCounts,
};

fn lead(email: &str, name: &str) -> NewLead {
    NewLead {
        email: email.into(),
        name: Some(name.into()),
        company_name: Some("Acme".into()),
        company_domain: email.split('@').nth(1).map(str::to_owned),
        owner_rep: Some("alice".into()),
        time_zone: None,
        status: None,
        attributes: Default::default(),
    }
}

fn activity(rep: &str, msg_id: &str, lead_ids: Vec<i64>) -> NewActivity {
    NewActivity {
        rep_id: rep.into(),
        kind: ActivityKind::EmailSent,
        occurred_at: common::t0(),
        source: SourceKind::Mail,
        source_id: msg_id.into(),
        thread_key: Some(msg_id.into()),
        subject: Some("Hello".into()),
        direction: Direction::Outbound,
        lead_ids,
        details: serde_json::json!({}),
    }
}

store_tests!(
    migrations_are_idempotent,
    lead_upsert_counts,
    absent_columns_keep_values,
    activities_are_stored_once,
    batches_longer_than_one_statement,
    explain_finds_every_record_of_a_message,
    a_reply_decided_before_its_original_is_stored,
    cursors_round_trip,
    health_is_recorded,
    reps_follow_the_config,
    first_outbound_contacts,
    header_fields_are_kept_where_a_later_lead_could_use_them,
    a_lead_imported_later_joins_mail_that_counted_already,
);

mod the_natural_key_with_the_message_id_first_keeps_what_was_recorded {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::the_natural_key_with_the_message_id_first_keeps_what_was_recorded(
            super::TestDb::sqlite_unmigrated().await,
        )
        .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::the_natural_key_with_the_message_id_first_keeps_what_was_recorded(
            super::TestDb::postgres_unmigrated().await,
        )
        .await
    }
}

async fn migrations_are_idempotent(db: TestDb) {
    db.store.migrate().await.unwrap();
    db.store.migrate().await.unwrap();
    db.store.ping().await.unwrap();
    assert_eq!(db.store.count_leads().await.unwrap(), 0);
}

async fn lead_upsert_counts(db: TestDb) {
    let s = &db.store;
    s.sync_reps(&test_config(&db.url)).await.unwrap();
    let leads = vec![lead("sara@acme.example", "Sara"), lead("tom@acme.example", "Tom")];
    let c = s.upsert_leads(&leads, LeadColumns::all()).await.unwrap();
    assert_eq!(
        c,
        UpsertCounts {
            inserted: 2,
            updated: 0,
            unchanged: 0
        }
    );
    let c = s.upsert_leads(&leads, LeadColumns::all()).await.unwrap();
    assert_eq!(
        c,
        UpsertCounts {
            inserted: 0,
            updated: 0,
            unchanged: 2
        }
    );

    let mut changed = leads.clone();
    changed[1].name = Some("Tom Berg".into());
    changed[1].attributes.insert("industry".into(), "steel".into());
    let c = s.upsert_leads(&changed, LeadColumns::all()).await.unwrap();
    assert_eq!(
        c,
        UpsertCounts {
            inserted: 0,
            updated: 1,
            unchanged: 1
        }
    );

    let tom = s.lead_by_email("TOM@acme.example").await.unwrap().expect("tom");
    assert_eq!(tom.name.as_deref(), Some("Tom Berg"));
    assert_eq!(tom.company_domain.as_deref(), Some("acme.example"));
    assert_eq!(tom.attributes.0["industry"], "steel");
    assert_eq!(tom.status, "new");
    let counts = s.status_counts().await.unwrap();
    assert_eq!((counts.leads, counts.companies), (2, 1));
    let listed = s.list_leads(10, 0).await.unwrap();
    assert_eq!(
        listed.iter().map(|l| l.email.as_str()).collect::<Vec<_>>(),
        ["sara@acme.example", "tom@acme.example"]
    );
}

async fn absent_columns_keep_values(db: TestDb) {
    let s = &db.store;
    s.sync_reps(&test_config(&db.url)).await.unwrap();
    let mut first = lead("sara@acme.example", "Sara");
    first.status = Some("qualified".into());
    first.attributes.insert("tier".into(), "gold".into());
    s.upsert_leads(&[first], LeadColumns::all()).await.unwrap();

    // A later file with only email and a new attribute: name, status and tier stay.
    let mut second = lead("sara@acme.example", "ignored");
    second.name = None;
    second.owner_rep = None;
    second.attributes.insert("source".into(), "fair".into());
    let cols = LeadColumns {
        attributes: true,
        ..Default::default()
    };
    let c = s.upsert_leads(&[second], cols).await.unwrap();
    assert_eq!(c.updated, 1);
    let sara = s.lead_by_email("sara@acme.example").await.unwrap().unwrap();
    assert_eq!(sara.name.as_deref(), Some("Sara"));
    assert_eq!(sara.status, "qualified");
    assert_eq!(sara.owner_rep.as_deref(), Some("alice"));
    assert_eq!(sara.attributes.0["tier"], "gold");
    assert_eq!(sara.attributes.0["source"], "fair");
}

async fn activities_are_stored_once(db: TestDb) {
    let s = &db.store;
    s.sync_reps(&test_config(&db.url)).await.unwrap();
    s.upsert_leads(&[lead("sara@acme.example", "Sara")], LeadColumns::all())
        .await
        .unwrap();
    let sara = s.lead_by_email("sara@acme.example").await.unwrap().unwrap();

    let a = activity("alice", "<m1@example.com>", vec![sara.id]);
    let first = s.record_activity(&a).await.unwrap();
    assert!(first.is_some());
    assert_eq!(s.record_activity(&a).await.unwrap(), None, "same natural key twice");

    // Same message for another rep is another activity.
    assert!(
        s.record_activity(&activity("bob", "<m1@example.com>", vec![]))
            .await
            .unwrap()
            .is_some()
    );
    // One message is one mail activity per rep, whatever its kind: a message first taken for
    // received mail is upgraded when it turns out to be a reply, never counted beside it.
    let mut received = activity("alice", "<r1@acme.example>", vec![sara.id]);
    received.kind = ActivityKind::EmailReceived;
    received.direction = Direction::Inbound;
    received.occurred_at += Duration::hours(1);
    assert!(s.record_activity(&received).await.unwrap().is_some());
    let mut reply = received.clone();
    reply.kind = ActivityKind::ReplyReceived;
    assert!(s.record_activity(&reply).await.unwrap().is_some(), "upgraded");
    assert_eq!(s.record_activity(&received).await.unwrap(), None, "never downgraded");
    // Other sources keep one activity per kind (a meeting is booked, then held).
    let mut booked = activity("alice", "event-1", vec![sara.id]);
    booked.source = SourceKind::Calendar;
    booked.kind = ActivityKind::MeetingBooked;
    let mut held = booked.clone();
    held.kind = ActivityKind::MeetingHeld;
    assert!(s.record_activity(&booked).await.unwrap().is_some());
    assert!(s.record_activity(&held).await.unwrap().is_some());

    let for_sara = s.activities_for_lead(sara.id).await.unwrap();
    assert_eq!(for_sara.len(), 4);
    assert_eq!(for_sara[0].kind, "reply_received", "newest first");
    let counts = s.count_by_rep_and_kind(None, None).await.unwrap();
    let total: i64 = counts.iter().map(|c| c.count).sum();
    assert_eq!(total, 5);
    let window = s
        .count_by_rep_and_kind(Some(common::t0() + Duration::minutes(30)), None)
        .await
        .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].kind, "reply_received");
}

/// The config's reps and two leads at Acme, Sara and Tom.
async fn sara_and_tom(db: &TestDb) -> (Lead, Lead) {
    let s = &db.store;
    s.sync_reps(&test_config(&db.url)).await.unwrap();
    s.upsert_leads(
        &[lead("sara@acme.example", "Sara"), lead("tom@acme.example", "Tom")],
        LeadColumns::all(),
    )
    .await
    .unwrap();
    let sara = s.lead_by_email("sara@acme.example").await.unwrap().unwrap();
    let tom = s.lead_by_email("tom@acme.example").await.unwrap().unwrap();
    (sara, tom)
}

/// A batch of mail as ingestion writes it: more rows than one statement holds (SQLite writes
/// them in statements of 100 rows, PostgreSQL in one), keys repeated within the batch, a
/// received message and its upgrade to a reply side by side, and `mail_seen` rows with and
/// without header fields, written twice.
async fn batches_longer_than_one_statement(db: TestDb) {
    let s = &db.store;
    let (sara, tom) = sara_and_tom(&db).await;

    let mut list: Vec<NewActivity> = (0..250)
        .map(|i| {
            let leads = if i % 2 == 0 {
                vec![sara.id]
            } else {
                vec![sara.id, tom.id]
            };
            let mut a = activity("alice", &format!("<bulk{i}@example.com>"), leads);
            a.occurred_at += Duration::seconds(i);
            a.details = serde_json::json!({ "n": i });
            a
        })
        .collect();
    // The same key again (the same message in a second folder), and a received message that
    // a later row of the batch shows to be a reply.
    list.push(list[7].clone());
    let mut received = activity("alice", "<late-reply@acme.example>", vec![tom.id]);
    received.kind = ActivityKind::EmailReceived;
    received.direction = Direction::Inbound;
    let mut reply = received.clone();
    reply.kind = ActivityKind::ReplyReceived;
    list.push(received);
    list.push(reply);

    let now = s.now();
    let mut tx = s.begin().await.unwrap();
    let ids = tx.record_activities(&list, now).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ids.len(), list.len());
    assert!(ids[..250].iter().all(Option::is_some), "every new key gets an id");
    assert_eq!(ids[250], None, "a key repeated in the batch counts once");
    assert_eq!(
        ids[251..].iter().filter(|i| i.is_some()).count(),
        1,
        "received and reply of one message: one activity"
    );
    let unique: std::collections::HashSet<_> = ids.iter().flatten().collect();
    assert_eq!(unique.len(), 251);
    let for_sara = s.activities_for_lead(sara.id).await.unwrap();
    let for_tom = s.activities_for_lead(tom.id).await.unwrap();
    assert_eq!(for_sara.len(), 250, "every activity linked to its leads");
    assert_eq!(for_tom.len(), 126);
    let late = for_tom
        .iter()
        .find(|a| a.source_id == "<late-reply@acme.example>")
        .unwrap();
    assert_eq!(late.kind, "reply_received", "the reply won over plain received mail");
    assert_eq!(for_sara[0].source_id, "<bulk249@example.com>");
    assert_eq!(for_sara[0].occurred_at, common::t0() + Duration::seconds(249));

    // Recording the batch again adds nothing.
    let mut tx = s.begin().await.unwrap();
    let again = tx.record_activities(&list, now).await.unwrap();
    tx.commit().await.unwrap();
    assert!(again.iter().all(Option::is_none));

    let keys: Vec<String> = (0..230).map(|i| format!("7:{i}")).collect();
    let reasons: Vec<String> = (0..230).map(|i| format!("reason {i}")).collect();
    let headers = serde_json::json!({ "from": ["sara@acme.example"], "subject": "Hi" });
    let rows: Vec<NewSeenMail<'_, &serde_json::Value>> = (0..230)
        .map(|i| NewSeenMail {
            folder: "INBOX",
            item_key: &keys[i],
            message_id: &keys[i],
            decision: "skipped",
            reason: &reasons[i],
            occurred_at: (i % 3 != 0).then(|| common::t0() + Duration::minutes(i as i64)),
            headers: (i % 2 == 0).then_some(&headers),
        })
        .collect();
    let mut tx = s.begin().await.unwrap();
    tx.insert_seen("alice-imap", "alice", &rows, now).await.unwrap();
    tx.commit().await.unwrap();
    // Matched again: a skipped record is replaced by what counts now.
    let counted: Vec<_> = rows
        .iter()
        .take(120)
        .map(|r| NewSeenMail {
            decision: "email_received",
            reason: "counted",
            ..*r
        })
        .collect();
    let mut tx = s.begin().await.unwrap();
    tx.insert_seen("alice-imap", "alice", &counted, now).await.unwrap();
    tx.commit().await.unwrap();

    let after_match = s.seen_in_mailbox("alice-imap").await.unwrap();
    let reason_of = |k: &str| after_match.iter().find(|m| m.item_key == k).map(|m| m.reason.clone());
    assert_eq!(reason_of("7:119").as_deref(), Some("counted"));
    assert_eq!(reason_of("7:120").as_deref(), Some(reasons[120].as_str()));

    // Seen again, still without a lead, next to new messages: a counted record stays as it
    // is, a skipped one takes the newer reason, the new ones are added.
    let more_keys: Vec<String> = (230..260).map(|i| format!("7:{i}")).collect();
    let again: Vec<_> = rows[100..]
        .iter()
        .map(|r| NewSeenMail {
            reason: "seen again",
            ..*r
        })
        .chain(more_keys.iter().map(|k| NewSeenMail {
            item_key: k,
            message_id: k,
            reason: "new",
            ..rows[0]
        }))
        .collect();
    let mut tx = s.begin().await.unwrap();
    tx.insert_seen("alice-imap", "alice", &again, now).await.unwrap();
    tx.commit().await.unwrap();

    let seen = s.seen_in_mailbox("alice-imap").await.unwrap();
    assert_eq!(seen.len(), 260);
    let by_key: std::collections::HashMap<_, _> = seen.iter().map(|m| (m.item_key.as_str(), m)).collect();
    for k in &more_keys {
        assert_eq!(
            (by_key[k.as_str()].decision.as_str(), by_key[k.as_str()].reason.as_str()),
            ("skipped", "new")
        );
    }
    for i in [0usize, 1, 99, 100, 119, 120, 199, 200, 229] {
        let m = by_key[keys[i].as_str()];
        assert_eq!(m.rep_id, "alice");
        assert_eq!(m.folder, "INBOX");
        if i < 120 {
            assert_eq!((m.decision.as_str(), m.reason.as_str()), ("email_received", "counted"));
        } else {
            assert_eq!((m.decision.as_str(), m.reason.as_str()), ("skipped", "seen again"));
        }
        assert_eq!(m.occurred_at, rows[i].occurred_at, "row {i}");
        assert_eq!(m.headers.as_ref().map(|h| &h.0), rows[i].headers, "row {i}");
    }
}

/// `rapport explain` finds a message by its Message-ID in every mailbox and folder, through
/// the hashed key, also for rows recorded before the key existed (filled in by `migrate`).
async fn explain_finds_every_record_of_a_message(db: TestDb) {
    let s = &db.store;
    s.sync_reps(&test_config(&db.url)).await.unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("m{i}@acme.example")).collect();
    let keys: Vec<String> = (0..40).map(|i| format!("1:{i}")).collect();
    let row = |i: usize, folder: &'static str| NewSeenMail::<'_, &serde_json::Value> {
        folder,
        item_key: &keys[i],
        message_id: &ids[i],
        decision: "skipped",
        reason: "not counted: no lead",
        occurred_at: None,
        headers: None,
    };
    let rows: Vec<_> = (0..40).map(|i| row(i, "INBOX")).chain([row(7, "All Mail")]).collect();
    let mut tx = s.begin().await.unwrap();
    tx.insert_seen("alice-imap", "alice", &rows, common::t0())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let found = s.explain_message("<m7@acme.example>").await.unwrap();
    let places: Vec<_> = found.iter().map(|m| (m.folder.as_str(), m.item_key.as_str())).collect();
    assert_eq!(places, [("All Mail", "1:7"), ("INBOX", "1:7")]);
    assert!(s.explain_message("m7@acme.example.org").await.unwrap().is_empty());

    // Rows as an older version left them: no key. Migrating again keys them.
    db.exec("UPDATE mail_seen SET message_key = NULL").await;
    assert!(s.explain_message("m7@acme.example").await.unwrap().is_empty());
    s.migrate().await.unwrap();
    for i in [0, 7, 39] {
        let found = s.explain_message(&ids[i]).await.unwrap();
        assert_eq!(found.len(), if i == 7 { 2 } else { 1 }, "{}", ids[i]);
        assert!(found.iter().all(|m| m.message_id == ids[i]));
    }
}

/// A reply to mail decided in an earlier batch is a reply even when that batch is not stored
/// yet: deciding carries the Message-IDs it saw sent.
async fn a_reply_decided_before_its_original_is_stored(db: TestDb) {
    let s = &db.store;
    let ingestor = sara_and_alice_ingestor(&db).await;
    let offer = mail(
        "1:1",
        common::message(
            "offer@example.com",
            "alice@example.com",
            "sara@acme.example",
            "Offer",
            "",
        ),
    );
    let answer = mail(
        "1:2",
        common::message(
            "answer@acme.example",
            "sara@acme.example",
            "alice@example.com",
            "Re: Offer",
            "In-Reply-To: <offer@example.com>\r\n",
        ),
    );
    let mut sent_before = rapport::sources::mail::SentBefore::default();
    let (first_batch, second_batch) = ([offer], [answer]);
    let mut tx = ingestor.begin().await.unwrap();
    let first = ingestor.decide(&mut tx, &first_batch, &mut sent_before).await.unwrap();
    let second = ingestor.decide(&mut tx, &second_batch, &mut sent_before).await.unwrap();
    ingestor.store(&mut tx, &first_batch, first, None).await.unwrap();
    ingestor.store(&mut tx, &second_batch, second, None).await.unwrap();
    ingestor.commit(tx).await.unwrap();
    assert_eq!(common::count_kind(s, "email_sent").await, 1);
    assert_eq!(common::count_kind(s, "reply_received").await, 1);
    assert_eq!(common::count_kind(s, "email_received").await, 0);
}

/// Alice's mailbox ingestor (`alice-imap`) over a store whose one lead is sara@acme.example.
async fn sara_and_alice_ingestor(db: &TestDb) -> rapport::sources::mail::Ingestor {
    use rapport::sources::mail::{Ingestor, MatchRules};
    let s = &db.store;
    let config = test_config(&db.url);
    s.sync_reps(&config).await.unwrap();
    s.upsert_leads(&[lead("sara@acme.example", "Sara")], LeadColumns::all())
        .await
        .unwrap();
    let rules = std::sync::Arc::new(MatchRules::new(&config, s.load_lead_index().await.unwrap()));
    Ingestor::new(s.clone(), "alice-imap", &config.reps[0], rules)
}

/// A message read from INBOX under `key`.
fn mail(key: &str, raw: Vec<u8>) -> rapport::sources::mail::FetchedMail {
    rapport::sources::mail::FetchedMail {
        folder: "INBOX".into(),
        item_key: key.into(),
        headers: rapport::sources::mail::MailHeaders::parse(&raw),
        internal_date: None,
    }
}

/// A message with subject "Hi" read from INBOX under `key` (see [`mail`]).
fn hi(key: &str, id: &str, from: &str, to: &str, extra: &str) -> rapport::sources::mail::FetchedMail {
    mail(key, common::message(id, from, to, "Hi", extra))
}

/// Header fields are kept for matching again later only where a lead imported later could be
/// linked: not for counted mail whose every outside participant is one of its leads.
async fn header_fields_are_kept_where_a_later_lead_could_use_them(db: TestDb) {
    let s = &db.store;
    let ingestor = sara_and_alice_ingestor(&db).await;
    let batch = [
        hi(
            "1:1",
            "linked@acme.example",
            "sara@acme.example",
            "alice@example.com",
            "",
        ),
        hi(
            "1:2",
            "copied@acme.example",
            "sara@acme.example",
            "alice@example.com",
            "Cc: joe@gmail.com\r\n",
        ),
        hi("1:3", "nolead@gmail.com", "joe@gmail.com", "alice@example.com", ""),
        hi(
            "1:4",
            "internal@example.com",
            "bob@example.com",
            "alice@example.com",
            "",
        ),
    ];
    let stats = ingestor.ingest(&batch, None).await.unwrap();
    assert_eq!((stats.counted, stats.skipped), (2, 2), "{stats:?}");
    let seen = s.seen_in_mailbox("alice-imap").await.unwrap();
    let kept: Vec<(&str, &str, bool)> = seen
        .iter()
        .map(|r| (r.item_key.as_str(), r.decision.as_str(), r.headers.is_some()))
        .collect();
    assert_eq!(
        kept,
        [
            ("1:1", "email_received", false),
            ("1:2", "email_received", true),
            ("1:3", "skipped", true),
            ("1:4", "skipped", false),
        ]
    );
    let copied = seen[1].headers.as_ref().unwrap();
    assert_eq!(copied.0["cc"], serde_json::json!(["joe@gmail.com"]));
}

/// Mail that counted for one lead and copied someone who was no lead yet: once that person is
/// imported, matching the kept header fields again links the activities to the new lead too
/// (and makes it a newly contacted lead of the rep who wrote to it), without new activities.
async fn a_lead_imported_later_joins_mail_that_counted_already(db: TestDb) {
    use rapport::sources::mail::{FetchedMail, Ingestor, MatchRules};
    let s = &db.store;
    let ingestor = sara_and_alice_ingestor(&db).await;
    let batch = [
        hi(
            "1:1",
            "in@acme.example",
            "sara@acme.example",
            "alice@example.com",
            "Cc: joe@gmail.com\r\n",
        ),
        hi(
            "1:2",
            "out@example.com",
            "alice@example.com",
            "sara@acme.example, joe@gmail.com",
            "",
        ),
    ];
    assert_eq!(ingestor.ingest(&batch, None).await.unwrap().counted, 2);
    assert_eq!(first_contacts(s, 0, 30).await, [("alice".to_owned(), 1)]);

    s.upsert_leads(&[lead("joe@gmail.com", "Joe")], LeadColumns::all())
        .await
        .unwrap();
    let config = test_config(&db.url);
    let rules = std::sync::Arc::new(MatchRules::new(&config, s.load_lead_index().await.unwrap()));
    let ingestor = Ingestor::new(s.clone(), "alice-imap", &config.reps[0], rules);
    let again = || async {
        s.rematch_candidates("alice-imap")
            .await
            .unwrap()
            .into_iter()
            .map(|r| FetchedMail {
                folder: r.folder,
                item_key: r.item_key,
                headers: Some(serde_json::from_value(r.headers.unwrap().0).unwrap()),
                internal_date: r.occurred_at,
            })
            .collect::<Vec<_>>()
    };
    let candidates = again().await;
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    let stats = ingestor.ingest_again(&candidates).await.unwrap();
    assert_eq!((stats.counted, stats.duplicates, stats.linked), (0, 2, 2), "{stats:?}");

    let joe = s.lead_by_email("joe@gmail.com").await.unwrap().unwrap();
    let mut joined: Vec<String> = s
        .activities_for_lead(joe.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    joined.sort();
    assert_eq!(joined, ["email_received", "email_sent"]);
    assert_eq!(first_contacts(s, 0, 30).await, [("alice".to_owned(), 2)]);
    // The records now name Joe, and keep no header fields: nobody is left to link.
    let seen = s.seen_in_mailbox("alice-imap").await.unwrap();
    assert!(
        seen.iter().all(|r| r.reason.contains("joe@gmail.com (lead)")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|r| r.headers.is_none()), "{seen:?}");
    assert!(again().await.is_empty());
    assert_eq!(common::count_kind(s, "email_sent").await, 1);
}

async fn cursors_round_trip(db: TestDb) {
    let s = &db.store;
    assert_eq!(s.cursor("alice-imap", "INBOX").await.unwrap(), None);
    let mut c = SyncCursor {
        source_id: "alice-imap".into(),
        scope: "INBOX".into(),
        validity: Some(1_700_000_000),
        last_uid: Some(42),
        highest_modseq: Some(9_000_000_000),
        token: None,
    };
    let mut tx = s.begin().await.unwrap();
    tx.put_cursor(&c, s.now()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.cursor("alice-imap", "INBOX").await.unwrap(), Some(c.clone()));

    // A rolled-back transaction leaves the cursor where it was.
    c.last_uid = Some(99);
    let mut tx = s.begin().await.unwrap();
    tx.put_cursor(&c, s.now()).await.unwrap();
    drop(tx);
    assert_eq!(
        s.cursor("alice-imap", "INBOX").await.unwrap().unwrap().last_uid,
        Some(42)
    );
    assert_eq!(s.cursors_of("alice-imap").await.unwrap().len(), 1);

    // Ingestion's transactions may skip waiting for the disk on PostgreSQL (they carry their
    // own cursor); only that transaction, and it still commits.
    c.last_uid = Some(120);
    let mut tx = s.begin_replayable().await.unwrap();
    assert_eq!(
        synchronous_commit(&mut tx).await.as_deref(),
        (s.backend() == Backend::Postgres).then_some("off")
    );
    tx.put_cursor(&c, s.now()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.cursor("alice-imap", "INBOX").await.unwrap(), Some(c.clone()));
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        synchronous_commit(&mut tx).await.as_deref(),
        (s.backend() == Backend::Postgres).then_some("on")
    );
}

/// PostgreSQL's `synchronous_commit` inside `tx` (`None` on SQLite, which has no such setting).
async fn synchronous_commit(tx: &mut Tx) -> Option<String> {
    match tx {
        Tx::Postgres(t) => Some(
            sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&mut **t)
                .await
                .unwrap(),
        ),
        Tx::Sqlite(..) => None,
    }
}

async fn health_is_recorded(db: TestDb) {
    let s = &db.store;
    s.set_health("alice-imap", "imap", HealthState::Ok, None).await.unwrap();
    db.clock.advance(Duration::minutes(5));
    s.set_health("alice-imap", "imap", HealthState::AuthFailed, Some("LOGIN refused"))
        .await
        .unwrap();
    let h = s.health().await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].state, "auth_failed");
    assert_eq!(h[0].last_error.as_deref(), Some("LOGIN refused"));
    assert_eq!(h[0].last_success_at, Some(common::t0()), "success time kept");
    assert_eq!(h[0].last_error_at, Some(common::t0() + Duration::minutes(5)));
}

async fn reps_follow_the_config(db: TestDb) {
    let s = &db.store;
    let config = test_config(&db.url);
    s.sync_reps(&config).await.unwrap();
    s.sync_reps(&config).await.unwrap();
    // An activity for a rep that is not configured violates the foreign key.
    assert!(
        s.record_activity(&activity("mallory", "<x@example.com>", vec![]))
            .await
            .is_err()
    );
    assert!(
        s.record_activity(&activity("bob", "<x@example.com>", vec![]))
            .await
            .unwrap()
            .is_some()
    );
}

// In the mimalloc the library links (see src/store/sqlite_alloc.rs).
unsafe extern "C" {
    fn mi_is_in_heap_region(p: *const std::ffi::c_void) -> bool;
}

/// SQLite allocates from mimalloc once a store has been opened (SQLite-only: PostgreSQL runs in
/// its own process). Every test of this file opens a store before any other SQLite use, so
/// whichever opened first switched SQLite over.
#[tokio::test]
async fn sqlite_allocates_with_mimalloc() {
    let _db = TestDb::sqlite().await;
    // SAFETY: a block from sqlite3_malloc, looked at while live, then freed by sqlite3_free.
    let in_mimalloc = unsafe {
        let p = rusqlite::ffi::sqlite3_malloc(100);
        assert!(!p.is_null());
        let in_heap = mi_is_in_heap_region(p);
        rusqlite::ffi::sqlite3_free(p);
        in_heap
    };
    assert!(in_mimalloc, "SQLite's memory does not come from mimalloc");
}

/// Per rep, the leads whose first outbound contact (by anyone) falls in days `[from, to)` after
/// `t0`, sorted.
async fn first_contacts(s: &Store, from: i64, to: i64) -> Vec<(String, i64)> {
    let reps = ["alice".to_owned(), "bob".to_owned()];
    let group = RepGroup {
        reps: &reps,
        from: common::t0() + Duration::days(from),
        to: common::t0() + Duration::days(to),
    };
    let mut out = s.first_contacts_for_reps(&[group]).await.unwrap();
    out.sort();
    out
}

/// `lead_first_outbound` (reports' newly contacted leads): per lead, its earliest outbound
/// activity by anyone, whatever order activities are recorded in, one at a time or in a batch.
async fn first_outbound_contacts(db: TestDb) {
    let s = &db.store;
    let (sara, tom) = sara_and_tom(&db).await;
    let (sara, tom) = (sara.id, tom.id);
    let sent = |rep: &str, id: &str, day: i64, leads: Vec<i64>| {
        let mut a = activity(rep, id, leads);
        a.occurred_at = common::t0() + Duration::days(day);
        a
    };
    let counts =
        |pairs: &[(&str, i64)]| -> Vec<(String, i64)> { pairs.iter().map(|(r, n)| (r.to_string(), *n)).collect() };

    assert!(
        s.record_activity(&sent("alice", "<s10@example.com>", 10, vec![sara]))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(first_contacts(s, 0, 30).await, counts(&[("alice", 1)]));
    // Backfilled out of order: an earlier outbound message takes over, a later one does not.
    for (rep, id, day) in [("bob", "<s5@example.com>", 5), ("alice", "<s7@example.com>", 7)] {
        let recorded = s.record_activity(&sent(rep, id, day, vec![sara])).await.unwrap();
        assert!(recorded.is_some(), "{id}");
    }
    assert_eq!(first_contacts(s, 0, 30).await, counts(&[("bob", 1)]));
    assert_eq!(first_contacts(s, 5, 6).await, counts(&[("bob", 1)]));
    // A key seen before is no new activity, whatever its time; inbound mail is no contact.
    assert_eq!(
        s.record_activity(&sent("alice", "<s10@example.com>", 0, vec![sara]))
            .await
            .unwrap(),
        None
    );
    let mut received = sent("alice", "<r1@acme.example>", 1, vec![tom]);
    received.kind = ActivityKind::EmailReceived;
    received.direction = Direction::Inbound;
    assert!(s.record_activity(&received).await.unwrap().is_some());
    assert_eq!(first_contacts(s, 0, 30).await, counts(&[("bob", 1)]));

    // In one batch: the earliest per lead, compared with what is stored.
    let batch = [
        sent("bob", "<t3@example.com>", 3, vec![tom]),
        sent("alice", "<t2@example.com>", 2, vec![tom]),
        sent("alice", "<t6@example.com>", 6, vec![tom, sara]),
    ];
    let now = s.now();
    let mut tx = s.begin().await.unwrap();
    assert!(
        tx.record_activities(&batch, now)
            .await
            .unwrap()
            .iter()
            .all(Option::is_some)
    );
    tx.commit().await.unwrap();
    assert_eq!(first_contacts(s, 0, 30).await, counts(&[("alice", 1), ("bob", 1)]));
    assert_eq!(first_contacts(s, 2, 3).await, counts(&[("alice", 1)]));
    assert_eq!(first_contacts(s, 5, 6).await, counts(&[("bob", 1)]));
}

/// Applies this backend's migrations numbered below `version`, and no others: the database
/// as an older Rapport left it.
async fn migrate_before(db: &TestDb, version: i64) {
    let mut migrator = match db.store.backend() {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    let older: Vec<_> = migrator.iter().filter(|m| m.version < version).cloned().collect();
    assert!(!older.is_empty() && older.len() < migrator.iter().count());
    migrator.migrations = older.into();
    match db.store.backend() {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// Migration 0009 puts the Message-ID first in the natural key's unique index (on SQLite by
/// building `activities` and `activity_leads` again). What an older version recorded stays as
/// it was, ids, lead links and first contacts included; the key still keeps every activity
/// once, and removing an activity still removes its lead links.
async fn the_natural_key_with_the_message_id_first_keeps_what_was_recorded(db: TestDb) {
    migrate_before(&db, 9).await;
    let s = &db.store;
    let (sara, tom) = sara_and_tom(&db).await;
    let mut old = Vec::new();
    for (i, (rep, leads)) in [
        ("alice", vec![sara.id]),
        ("alice", vec![sara.id, tom.id]),
        ("bob", vec![tom.id]),
        ("alice", vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = activity(rep, &format!("<m{i}@example.com>"), leads);
        a.occurred_at += Duration::days(i as i64);
        old.push(a);
    }
    let mut booked = activity("alice", "event-1", vec![sara.id]);
    (booked.source, booked.kind, booked.direction) =
        (SourceKind::Calendar, ActivityKind::MeetingBooked, Direction::Inbound);
    old.push(booked);
    for a in &old {
        assert!(s.record_activity(a).await.unwrap().is_some(), "{}", a.source_id);
    }

    let activities = "SELECT CAST(id AS TEXT) || ' ' || rep_id || ' ' || kind || ' ' || dedup_kind || ' '
        || CAST(occurred_at AS TEXT) || ' ' || source || ' ' || source_id || ' ' || COALESCE(thread_key, '-')
        || ' ' || COALESCE(subject, '-')
        || ' ' || direction || ' ' || CAST(details AS TEXT) || ' ' || CAST(created_at AS TEXT)
        FROM activities ORDER BY id";
    let links = "SELECT CAST(activity_id AS TEXT) || ' ' || CAST(lead_id AS TEXT) FROM activity_leads
        ORDER BY activity_id, lead_id";
    let firsts = "SELECT CAST(lead_id AS TEXT) || ' ' || rep_id || ' ' || CAST(activity_id AS TEXT)
        || ' ' || CAST(first_at AS TEXT) FROM lead_first_outbound ORDER BY lead_id";
    let before = (
        db.texts(activities).await,
        db.texts(links).await,
        db.texts(firsts).await,
    );
    assert_eq!(
        (before.0.len(), before.1.len(), before.2.len()),
        (5, 5, 2),
        "{before:?}"
    );

    s.migrate().await.unwrap();
    let after = (
        db.texts(activities).await,
        db.texts(links).await,
        db.texts(firsts).await,
    );
    assert_eq!(after, before);

    // The one unique index besides the primary key, column by column.
    let unique_columns = match s.backend() {
        Backend::Sqlite => {
            "SELECT ii.name FROM pragma_index_list('activities') AS il, pragma_index_info(il.name) AS ii
             WHERE il.\"unique\" = 1 ORDER BY il.name, ii.seqno"
        }
        Backend::Postgres => {
            "SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = 'activities'::regclass AND i.indisunique AND NOT i.indisprimary
             ORDER BY i.indexrelid, k.n"
        }
    };
    assert_eq!(
        db.texts(unique_columns).await,
        ["source_id", "rep_id", "dedup_kind", "source"]
    );

    // Still once per natural key; new activities take new ids.
    for a in &old {
        assert_eq!(s.record_activity(a).await.unwrap(), None, "{}", a.source_id);
    }
    let newest: i64 = before.0.last().unwrap().split(' ').next().unwrap().parse().unwrap();
    let new = s
        .record_activity(&activity("bob", "<m0@example.com>", vec![sara.id]))
        .await
        .unwrap();
    assert!(new.is_some_and(|id| id > newest), "{new:?} after {newest}");
    assert_eq!(db.texts(activities).await.len(), 6);

    // The lead links point at the new table: removing an activity removes its links.
    let second = before.0[1].split(' ').next().unwrap();
    db.exec(&format!("DELETE FROM activities WHERE id = {second}")).await;
    let links_left = db.texts(links).await;
    assert_eq!(links_left.len(), 4, "{links_left:?}");
    assert!(
        links_left.iter().all(|l| !l.starts_with(&format!("{second} "))),
        "{links_left:?}"
    );
}
