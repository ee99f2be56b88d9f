-- Nurture sequences: leases for claiming due steps, pause bookkeeping, the sequence versions
-- enrollments are pinned to, and the outbox fields a resend and crash reconciliation need.
-- Keep in step with migrations/postgres/0004_sequences.sql.

-- The text of every sequence version an enrollment started on, so an edited file does not
-- change enrollments already running.
CREATE TABLE sequence_versions (
    sequence_id TEXT NOT NULL,
    version     TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (sequence_id, version)
) STRICT;

-- A sender holds an enrollment until lease_until; another may take it after (a crash).
ALTER TABLE enrollments ADD COLUMN lease_until TEXT;
-- When the last step happened: the base of the next wait.
ALTER TABLE enrollments ADD COLUMN last_step_at TEXT;
-- The latest auto-reply already acted on (a pause), so it pauses only once.
ALTER TABLE enrollments ADD COLUMN auto_reply_seen_at TEXT;
CREATE INDEX enrollments_due_mailbox ON enrollments(mailbox_id, next_due_at) WHERE state IN ('active', 'paused');
CREATE INDEX enrollments_lead ON enrollments(lead_id);

-- The message exactly as sent (a retry sends the same bytes), its envelope sender, and when
-- the SMTP transaction started (caps and gaps count attempts, crash reconciliation needs it).
ALTER TABLE outbox ADD COLUMN raw TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN sender TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN attempted_at TEXT;
CREATE INDEX outbox_mailbox_attempts ON outbox(mailbox_id, attempted_at);
CREATE INDEX outbox_mailbox_state ON outbox(mailbox_id, state);
