-- Rapport schema, PostgreSQL flavour. Keep in step with migrations/sqlite/0001_init.sql.

CREATE TABLE reps (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    time_zone   TEXT NOT NULL,
    team        TEXT,
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE companies (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain      TEXT NOT NULL UNIQUE,
    name        TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE leads (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           TEXT NOT NULL,
    email_key       TEXT NOT NULL UNIQUE,
    name            TEXT,
    company_id      BIGINT REFERENCES companies(id),
    company_name    TEXT,
    owner_rep       TEXT REFERENCES reps(id),
    time_zone       TEXT,
    status          TEXT NOT NULL DEFAULT 'new',
    attributes      JSONB NOT NULL DEFAULT '{}',
    bounced_at      TIMESTAMPTZ,
    unsubscribed_at TIMESTAMPTZ,
    origin          TEXT NOT NULL DEFAULT 'import',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX leads_company ON leads(company_id);
CREATE INDEX leads_owner ON leads(owner_rep);

CREATE TABLE activities (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rep_id      TEXT NOT NULL REFERENCES reps(id),
    kind        TEXT NOT NULL,
    -- the kind as far as uniqueness goes: 'message' for every mail kind (one message is one
    -- activity for a rep, whatever it was classified as), the kind itself otherwise (a meeting
    -- is booked, held and maybe cancelled).
    dedup_kind  TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    source      TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    thread_key  TEXT,
    subject     TEXT,
    direction   TEXT NOT NULL,
    details     JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (rep_id, dedup_kind, source, source_id)
);
CREATE INDEX activities_rep_time ON activities(rep_id, occurred_at);
CREATE INDEX activities_time ON activities(occurred_at);
CREATE INDEX activities_thread ON activities(thread_key);

CREATE TABLE activity_leads (
    activity_id BIGINT NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    lead_id     BIGINT NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    PRIMARY KEY (activity_id, lead_id)
);
CREATE INDEX activity_leads_lead ON activity_leads(lead_id);

CREATE TABLE sync_cursors (
    source_id       TEXT NOT NULL,
    scope           TEXT NOT NULL,
    validity        BIGINT,
    last_uid        BIGINT,
    highest_modseq  BIGINT,
    token           TEXT,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source_id, scope)
);

CREATE TABLE source_health (
    source_id       TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    last_success_at TIMESTAMPTZ,
    last_error      TEXT,
    last_error_at   TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE suppressions (
    entry       TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE enrollments (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sequence_id      TEXT NOT NULL,
    sequence_version TEXT NOT NULL,
    lead_id          BIGINT NOT NULL REFERENCES leads(id),
    rep_id           TEXT NOT NULL REFERENCES reps(id),
    mailbox_id       TEXT,
    state            TEXT NOT NULL,
    next_step        INTEGER NOT NULL DEFAULT 0,
    next_due_at      TIMESTAMPTZ,
    stop_reason      TEXT,
    enrolled_at      TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX enrollments_one_live ON enrollments(sequence_id, lead_id) WHERE state IN ('active', 'paused');
CREATE INDEX enrollments_due ON enrollments(next_due_at) WHERE state = 'active';

CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enrollment_id   BIGINT NOT NULL REFERENCES enrollments(id),
    step_index      INTEGER NOT NULL,
    mailbox_id      TEXT NOT NULL,
    message_id      TEXT NOT NULL UNIQUE,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    UNIQUE (enrollment_id, step_index)
);
CREATE INDEX outbox_state ON outbox(state, next_attempt_at);
