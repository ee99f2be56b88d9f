-- The natural key's unique index starts with `source_id` (the Message-ID, event UID, outbox
-- id) instead of ending with it. Every row of one mailbox has the same rep, dedup kind and
-- source, so with those first each step down the index compared three equal text columns
-- before the one that tells rows apart; recording a backfill's activities spent 5.9% fewer
-- instructions with the Message-ID first (BENCHMARKS.md, 2026-12-04, late night). Lookups
-- name every column of the key, or the Message-IDs and the rep (`outbound_message_ids`), so
-- the new order serves them all.
--
-- A UNIQUE constraint cannot be altered in SQLite: the table is built again. sqlx runs a
-- migration inside a transaction, where `PRAGMA foreign_keys` cannot be switched off, and
-- with foreign keys on, dropping `activities` would delete every lead link through
-- `activity_leads`' ON DELETE CASCADE. So `activity_leads` is built again too, pointing at
-- the new table, and the old tables are dropped child first. Row ids are kept:
-- `lead_first_outbound.activity_id` names them.
-- Keep in step with migrations/postgres/0009_natural_key_message_first.sql.
CREATE TABLE activities_new (
    id          INTEGER PRIMARY KEY,
    rep_id      TEXT NOT NULL REFERENCES reps(id),
    kind        TEXT NOT NULL,
    -- the kind as far as uniqueness goes: 'message' for every mail kind (one message is one
    -- activity for a rep, whatever it was classified as), the kind itself otherwise (a meeting
    -- is booked, held and maybe cancelled).
    dedup_kind  TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    -- where it came from (mail, calendar, sequence, manual) and that source's own id for it
    -- (Message-ID, event UID + instance, outbox id): the natural key with rep and kind.
    source      TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    thread_key  TEXT,
    subject     TEXT,
    direction   TEXT NOT NULL,
    details     TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    -- the column that tells rows apart first (migration 0009)
    UNIQUE (source_id, rep_id, dedup_kind, source)
) STRICT;
INSERT INTO activities_new (id, rep_id, kind, dedup_kind, occurred_at, source, source_id,
                            thread_key, subject, direction, details, created_at)
SELECT id, rep_id, kind, dedup_kind, occurred_at, source, source_id,
       thread_key, subject, direction, details, created_at
FROM activities ORDER BY id;

CREATE TABLE activity_leads_new (
    activity_id INTEGER NOT NULL REFERENCES activities_new(id) ON DELETE CASCADE,
    lead_id     INTEGER NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    PRIMARY KEY (activity_id, lead_id)
) STRICT, WITHOUT ROWID;
INSERT INTO activity_leads_new (activity_id, lead_id)
SELECT activity_id, lead_id FROM activity_leads ORDER BY activity_id, lead_id;

DROP TABLE activity_leads;
DROP TABLE activities;
-- Renaming rewrites `activity_leads_new`'s reference to the new name.
ALTER TABLE activities_new RENAME TO activities;
ALTER TABLE activity_leads_new RENAME TO activity_leads;

CREATE INDEX activities_time ON activities(occurred_at);
CREATE INDEX activities_rep_time_kind ON activities(rep_id, occurred_at, kind);
CREATE INDEX activities_rep_kind_time ON activities(rep_id, kind, occurred_at);
CREATE INDEX activity_leads_lead ON activity_leads(lead_id);
