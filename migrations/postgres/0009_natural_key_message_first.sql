-- The natural key's unique index starts with `source_id` (the Message-ID, event UID, outbox
-- id) instead of ending with it: every row of one mailbox has the same rep, dedup kind and
-- source, so with those first each step down the index compared three equal text columns
-- before the one that tells rows apart (see migrations/sqlite/0009_natural_key_message_first.sql,
-- which has to build the table again). `ON CONFLICT` finds a constraint by its set of columns,
-- in any order.
-- Keep in step with migrations/sqlite/0009_natural_key_message_first.sql.
ALTER TABLE activities ADD CONSTRAINT activities_natural_key UNIQUE (source_id, rep_id, dedup_kind, source);
ALTER TABLE activities DROP CONSTRAINT IF EXISTS activities_rep_id_dedup_kind_source_source_id_key;
