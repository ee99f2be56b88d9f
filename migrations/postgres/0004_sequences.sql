-- Nurture sequences: leases for claiming due steps, pause bookkeeping, the sequence versions
-- enrollments are pinned to, and the outbox fields a resend and crash reconciliation need.
-- Keep in step with migrations/sqlite/0004_sequences.sql.

CREATE TABLE sequence_versions (
    sequence_id TEXT NOT NULL,
    version     TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sequence_id, version)
);

ALTER TABLE enrollments ADD COLUMN lease_until TIMESTAMPTZ;
ALTER TABLE enrollments ADD COLUMN last_step_at TIMESTAMPTZ;
ALTER TABLE enrollments ADD COLUMN auto_reply_seen_at TIMESTAMPTZ;
CREATE INDEX enrollments_due_mailbox ON enrollments(mailbox_id, next_due_at) WHERE state IN ('active', 'paused');
CREATE INDEX enrollments_lead ON enrollments(lead_id);

ALTER TABLE outbox ADD COLUMN raw TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN sender TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN attempted_at TIMESTAMPTZ;
CREATE INDEX outbox_mailbox_attempts ON outbox(mailbox_id, attempted_at);
CREATE INDEX outbox_mailbox_state ON outbox(mailbox_id, state);
