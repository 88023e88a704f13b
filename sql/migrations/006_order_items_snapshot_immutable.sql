-- Once a snapshot is taken (label IS NOT NULL) the database itself refuses to change it,
-- whichever client tries.
CREATE OR REPLACE FUNCTION order_items_snapshot_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.unit_price_cents IS DISTINCT FROM OLD.unit_price_cents
        OR NEW.label IS DISTINCT FROM OLD.label
        OR NEW.subtotal_cents IS DISTINCT FROM OLD.subtotal_cents
        OR NEW.quantity IS DISTINCT FROM OLD.quantity THEN
        RAISE EXCEPTION 'order item % has a price snapshot, which cannot change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation',
                  HINT = 'Snapshots are immutable; create a new order item instead.';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER order_items_snapshot_immutable
    BEFORE UPDATE ON order_items
    FOR EACH ROW
    WHEN (OLD.label IS NOT NULL)
    EXECUTE FUNCTION order_items_snapshot_immutable();
