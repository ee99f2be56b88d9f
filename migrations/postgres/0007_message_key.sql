-- `rapport explain` finds a message's records by a 64-bit hash of its Message-ID
-- (`store::mail::message_key`): see migrations/sqlite/0007_message_key.sql. Rows recorded
-- before this migration get their key from `Store::migrate`.
ALTER TABLE mail_seen ADD COLUMN message_key BIGINT;
DROP INDEX IF EXISTS mail_seen_message;
CREATE INDEX mail_seen_message_key ON mail_seen(message_key);
