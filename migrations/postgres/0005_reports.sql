-- Targets and progress reports: indexes that make period counts cheap, and the first outbound
-- contact of every lead (`new_leads_contacted`), kept up to date by a trigger.
-- Keep in step with migrations/sqlite/0005_reports.sql.

-- Period counts read (rep_id, occurred_at range) and group by kind: with kind in the index the
-- count can be an index-only scan. It replaces the narrower (rep_id, occurred_at) index.
DROP INDEX IF EXISTS activities_rep_time;
CREATE INDEX activities_rep_time_kind ON activities(rep_id, occurred_at, kind);
-- Per-kind listings (the API's kind filter, proposals among sent mail).
CREATE INDEX activities_rep_kind_time ON activities(rep_id, kind, occurred_at);

-- The first outbound activity that names each lead, and whose it was: a lead counts as newly
-- contacted in the period that holds this row's first_at, for this rep.
CREATE TABLE lead_first_outbound (
    lead_id     BIGINT PRIMARY KEY REFERENCES leads(id) ON DELETE CASCADE,
    rep_id      TEXT NOT NULL,
    activity_id BIGINT NOT NULL,
    first_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX lead_first_outbound_rep_time ON lead_first_outbound(rep_id, first_at);

INSERT INTO lead_first_outbound (lead_id, rep_id, activity_id, first_at)
SELECT DISTINCT ON (al.lead_id) al.lead_id, a.rep_id, a.id, a.occurred_at
FROM activity_leads al JOIN activities a ON a.id = al.activity_id
WHERE a.direction = 'outbound'
ORDER BY al.lead_id, a.occurred_at, a.id;

-- Activities are linked to their leads right after they are inserted, so the link is the
-- moment to look: an earlier outbound activity (mail backfilled out of order) takes over.
CREATE FUNCTION rapport_lead_first_outbound() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_first_outbound (lead_id, rep_id, activity_id, first_at)
    SELECT NEW.lead_id, a.rep_id, a.id, a.occurred_at FROM activities a
    WHERE a.id = NEW.activity_id AND a.direction = 'outbound'
    ON CONFLICT (lead_id) DO UPDATE SET rep_id = excluded.rep_id, activity_id = excluded.activity_id,
        first_at = excluded.first_at
    WHERE excluded.first_at < lead_first_outbound.first_at;
    RETURN NULL;
END
$$;
CREATE TRIGGER activity_leads_first_outbound AFTER INSERT ON activity_leads
    FOR EACH ROW EXECUTE FUNCTION rapport_lead_first_outbound();
