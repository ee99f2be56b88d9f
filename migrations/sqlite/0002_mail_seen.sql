-- Every message a mailbox task has looked at, counted or not, and why: the record behind
-- `rapport explain` and `rapport verify`, and the Maildir source's cursor.
CREATE TABLE mail_seen (
    mailbox_id  TEXT NOT NULL,
    folder      TEXT NOT NULL,
    -- IMAP: "<uidvalidity>:<uid>"; Maildir: the file's unique name.
    item_key    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    rep_id      TEXT NOT NULL,
    -- the activity kind counted, or 'skipped' / 'unreadable'.
    decision    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    occurred_at TEXT,
    -- the header fields Rapport read (JSON), kept for every message with an external
    -- participant that no privacy rule excludes, so mail can be matched again later (a lead
    -- imported after its mail was seen). Never bodies; no subject with store_subjects: false.
    headers     TEXT,
    seen_at     TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, folder, item_key)
) STRICT;
CREATE INDEX mail_seen_message ON mail_seen(message_id);
