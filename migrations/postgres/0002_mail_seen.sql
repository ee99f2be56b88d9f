-- See migrations/sqlite/0002_mail_seen.sql.
CREATE TABLE mail_seen (
    mailbox_id  TEXT NOT NULL,
    folder      TEXT NOT NULL,
    item_key    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    rep_id      TEXT NOT NULL,
    decision    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    occurred_at TIMESTAMPTZ,
    headers     JSONB,
    seen_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (mailbox_id, folder, item_key)
);
CREATE INDEX mail_seen_message ON mail_seen(message_id);
