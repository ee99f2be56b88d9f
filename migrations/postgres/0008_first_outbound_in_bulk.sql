-- `lead_first_outbound` is kept by the code that records activities
-- (`store::activities::first_outbound`), a few rows per batch, instead of by a row trigger
-- run for every lead link (see migrations/sqlite/0008_first_outbound_in_bulk.sql).
-- Keep in step with migrations/sqlite/0008_first_outbound_in_bulk.sql.
DROP TRIGGER IF EXISTS activity_leads_first_outbound ON activity_leads;
DROP FUNCTION IF EXISTS rapport_lead_first_outbound();
