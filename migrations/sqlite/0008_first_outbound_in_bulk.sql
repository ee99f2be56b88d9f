-- `lead_first_outbound` is kept by the code that records activities
-- (`store::activities::first_outbound`), a few rows per batch, instead of by a trigger run
-- for every lead link: in the mail backfill benchmark the trigger cost 3.4% of Rapport's
-- instructions (BENCHMARKS.md, 2026-12-04 night). Every activity and lead link is written
-- through `Tx::record_activities`, which keeps the table as the trigger did: per lead, the
-- earliest outbound activity linked to it; a later one never replaces it, an equal time keeps
-- the row already there.
-- Keep in step with migrations/postgres/0008_first_outbound_in_bulk.sql.
DROP TRIGGER IF EXISTS activity_leads_first_outbound;
