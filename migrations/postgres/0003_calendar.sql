-- Meeting capture. See migrations/sqlite/0003_calendar.sql.

-- Every occurrence of a meeting a calendar task has seen inside its window, as it was at the
-- last sync: what the next sync compares with (moved? cancelled? gone? over?).
CREATE TABLE calendar_events (
    calendar_id TEXT NOT NULL,
    uid         TEXT NOT NULL,
    -- '' for a single event; the occurrence's original start for a recurring one.
    instance    TEXT NOT NULL,
    -- the CalDAV href, Google event id or 'feed' the occurrence was read from.
    resource    TEXT NOT NULL,
    rep_id      TEXT NOT NULL,
    start_at    TIMESTAMPTZ NOT NULL,
    end_at      TIMESTAMPTZ NOT NULL,
    cancelled   BOOLEAN NOT NULL DEFAULT FALSE,
    -- the rep declined the invitation.
    declined    BOOLEAN NOT NULL DEFAULT FALSE,
    -- JSON list of the lead ids it was matched to ([] when none).
    lead_ids    TEXT NOT NULL DEFAULT '[]',
    -- meeting_held is recorded.
    held        BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (calendar_id, uid, instance)
);
CREATE INDEX calendar_events_resource ON calendar_events(calendar_id, resource);

-- The ETag of each calendar object (CalDAV href) as last read, for the ETag fallback when a
-- server has no usable sync-collection.
CREATE TABLE calendar_resources (
    calendar_id TEXT NOT NULL,
    href        TEXT NOT NULL,
    etag        TEXT,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (calendar_id, href)
);
