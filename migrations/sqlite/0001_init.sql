-- Rapport schema, SQLite flavour. Times are RFC 3339 UTC text; JSON is text.
-- Keep in step with migrations/postgres/0001_init.sql: both backends run the same tests.

CREATE TABLE reps (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    time_zone   TEXT NOT NULL,
    team        TEXT,
    -- false once a rep disappears from the config; rows are kept for history.
    active      INTEGER NOT NULL DEFAULT 1,
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE companies (
    id          INTEGER PRIMARY KEY,
    domain      TEXT NOT NULL UNIQUE,
    name        TEXT,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE leads (
    id              INTEGER PRIMARY KEY,
    email           TEXT NOT NULL,
    -- lower-cased email: the identity of a lead.
    email_key       TEXT NOT NULL UNIQUE,
    name            TEXT,
    company_id      INTEGER REFERENCES companies(id),
    company_name    TEXT,
    owner_rep       TEXT REFERENCES reps(id),
    time_zone       TEXT,
    status          TEXT NOT NULL DEFAULT 'new',
    attributes      TEXT NOT NULL DEFAULT '{}',
    bounced_at      TEXT,
    unsubscribed_at TEXT,
    origin          TEXT NOT NULL DEFAULT 'import',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;
CREATE INDEX leads_company ON leads(company_id);
CREATE INDEX leads_owner ON leads(owner_rep);

CREATE TABLE activities (
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
    UNIQUE (rep_id, dedup_kind, source, source_id)
) STRICT;
CREATE INDEX activities_rep_time ON activities(rep_id, occurred_at);
CREATE INDEX activities_time ON activities(occurred_at);
CREATE INDEX activities_thread ON activities(thread_key);

CREATE TABLE activity_leads (
    activity_id INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    lead_id     INTEGER NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    PRIMARY KEY (activity_id, lead_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX activity_leads_lead ON activity_leads(lead_id);

-- Per source (mailbox, calendar) and scope (folder, calendar collection) sync position.
CREATE TABLE sync_cursors (
    source_id       TEXT NOT NULL,
    scope           TEXT NOT NULL,
    validity        INTEGER,
    last_uid        INTEGER,
    highest_modseq  INTEGER,
    token           TEXT,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (source_id, scope)
) STRICT;

-- Health of each source as last seen by its task, for `rapport status` and /readyz.
CREATE TABLE source_health (
    source_id       TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    last_success_at TEXT,
    last_error      TEXT,
    last_error_at   TEXT,
    updated_at      TEXT NOT NULL
) STRICT;

-- Addresses (`sara@acme.example`) and domains (`@acme.example`) nothing is ever sent to.
CREATE TABLE suppressions (
    entry       TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE enrollments (
    id               INTEGER PRIMARY KEY,
    sequence_id      TEXT NOT NULL,
    -- content hash of the sequence file the enrollment started on.
    sequence_version TEXT NOT NULL,
    lead_id          INTEGER NOT NULL REFERENCES leads(id),
    rep_id           TEXT NOT NULL REFERENCES reps(id),
    mailbox_id       TEXT,
    state            TEXT NOT NULL,
    next_step        INTEGER NOT NULL DEFAULT 0,
    next_due_at      TEXT,
    stop_reason      TEXT,
    enrolled_at      TEXT NOT NULL,
    updated_at       TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX enrollments_one_live ON enrollments(sequence_id, lead_id) WHERE state IN ('active', 'paused');
CREATE INDEX enrollments_due ON enrollments(next_due_at) WHERE state = 'active';

-- Every message a sequence sends; the row (with its Message-ID) exists before SMTP starts.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    enrollment_id   INTEGER NOT NULL REFERENCES enrollments(id),
    step_index      INTEGER NOT NULL,
    mailbox_id      TEXT NOT NULL,
    message_id      TEXT NOT NULL UNIQUE,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    UNIQUE (enrollment_id, step_index)
) STRICT;
CREATE INDEX outbox_state ON outbox(state, next_attempt_at);
