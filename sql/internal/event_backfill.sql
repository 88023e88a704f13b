-- Where `paytool backfill events` stands, one row per event type pattern it lists. Written in
-- the same transaction as the page of events it describes: a killed run resumes at the page
-- after the last one committed, over the same window.

CREATE TABLE IF NOT EXISTS paytool.event_backfill (
    type_pattern TEXT PRIMARY KEY,
    since TIMESTAMPTZ NOT NULL,
    until TIMESTAMPTZ NOT NULL,
    -- Stripe's cursor: the last event of the last committed page (lists are newest first).
    last_event_id TEXT,
    pages BIGINT NOT NULL DEFAULT 0,
    fetched BIGINT NOT NULL DEFAULT 0,
    inserted BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
