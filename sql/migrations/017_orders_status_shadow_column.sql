-- orders.status goes from the enum to VARCHAR without a table rewrite under ACCESS EXCLUSIVE:
-- a shadow column kept in sync by a trigger (here), filled in batches (018), proven NOT NULL
-- without a long lock (019, 020), indexed concurrently (021), then swapped in a short
-- transaction (022).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS status_new VARCHAR;

CREATE OR REPLACE FUNCTION orders_status_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.status_new := NEW.status::TEXT;
    RETURN NEW;
END;
$$;

-- The WHEN clause skips rows already in sync, such as those the batched copy (018) writes.
CREATE OR REPLACE TRIGGER orders_status_sync
    BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW
    WHEN (NEW.status_new IS DISTINCT FROM NEW.status::TEXT)
    EXECUTE FUNCTION orders_status_sync();
