-- No query filters, joins or sorts on activities.thread_key (a reply is recognised by the
-- Message-IDs it references, through the natural key's index), so this index only cost every
-- insert one more b-tree write.
-- Keep in step with migrations/postgres/0006_drop_thread_index.sql.
DROP INDEX IF EXISTS activities_thread;
