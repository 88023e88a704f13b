-- Derived data follows the application's writes, in the application's own transaction, so
-- that neither the legacy application (which knows nothing of snapshots and totals) nor the
-- upgraded one can leave an order whose total, or whose pending payment's amount, disagrees
-- with its items:
-- * an item written without a snapshot (the legacy application's) takes it at once, from its
--   product, as the backfill's items step would; one whose product is missing or whose price
--   does not fit stays without one (the backfill reports it);
-- * once taken, price and label never change; the quantity of an item of an unpaid order may
--   (the legacy application edits carts) and its subtotal follows; the items of a PAID or
--   REFUNDED order are frozen;
-- * after every statement that inserts, updates or deletes items, the total of each unpaid
--   order it touched becomes the sum of its items (0 while one has no snapshot, as before the
--   backfill totalled it), and the amount of its payment still waiting to be paid follows;
-- * orders the application inserts, and orders whose items change, are queued for the
--   backfill (paytool.backfill_order_queue): its catch-up reads those and nothing else, so an
--   order settled at 0 (no items) is never read again.
-- paytool's own batches (paytool.backfill = on) do this work themselves and skip it here.
-- The totals and queue functions run as their owner (SECURITY DEFINER): the application's
-- role may lack privileges on payments and on paytool's schema.

-- The backfill's order queue, made here so that it exists before any write the triggers see:
-- made later, an order committed while it was being made would be queued nowhere. The backfill
-- seeds it once (sql/backfill/order_queue_seed.sql). order_id takes the type of orders.id.
-- Its orders step reads only `pending` rows and settles each once: totalled, or final at 0
-- without items, the row leaves; an order it cannot total (an item without a snapshot, a total
-- past INTEGER) stays as `unresolved`, reported, until its items change.
-- paytool's schema exists where paytool migrate runs (its history is there); a Prisma baseline
-- of this migration (paytool prisma baseline) may run where it does not. Created only when
-- missing: CREATE SCHEMA IF NOT EXISTS would check the CREATE privilege all the same.
DO $$
BEGIN
    IF to_regnamespace('paytool') IS NULL THEN
        CREATE SCHEMA paytool;
    END IF;
END;
$$;
CREATE TABLE IF NOT EXISTS paytool.backfill_order_queue AS
SELECT id AS order_id, 'pending'::TEXT AS state, now() AS queued_at FROM orders WITH NO DATA;
-- Made empty just above, and only paytool reads it.
-- squawk-ignore constraint-missing-not-valid, adding-serial-primary-key-field
ALTER TABLE paytool.backfill_order_queue ADD CONSTRAINT backfill_order_queue_pkey PRIMARY KEY (order_id);
-- squawk-ignore adding-not-nullable-field
ALTER TABLE paytool.backfill_order_queue ALTER COLUMN state SET NOT NULL;
ALTER TABLE paytool.backfill_order_queue ALTER COLUMN state SET DEFAULT 'pending';
-- squawk-ignore adding-not-nullable-field
ALTER TABLE paytool.backfill_order_queue ALTER COLUMN queued_at SET NOT NULL;
ALTER TABLE paytool.backfill_order_queue ALTER COLUMN queued_at SET DEFAULT clock_timestamp();
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX backfill_order_queue_pending_idx ON paytool.backfill_order_queue (order_id)
WHERE state = 'pending';

CREATE OR REPLACE FUNCTION order_items_snapshot_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    status_of_order TEXT;
BEGIN
    IF NEW.unit_price_cents IS DISTINCT FROM OLD.unit_price_cents
        OR NEW.label IS DISTINCT FROM OLD.label THEN
        RAISE EXCEPTION 'order item % has a price snapshot, which cannot change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation',
                  HINT = 'Snapshots are immutable; create a new order item instead.';
    END IF;
    IF NEW.quantity IS DISTINCT FROM OLD.quantity
        OR NEW.subtotal_cents IS DISTINCT FROM OLD.subtotal_cents
        OR NEW.order_id IS DISTINCT FROM OLD.order_id THEN
        SELECT o.status::TEXT INTO status_of_order FROM orders AS o WHERE o.id = OLD.order_id;
        IF status_of_order IN ('PAID', 'REFUNDED') THEN
            RAISE EXCEPTION 'order item % belongs to order %, which is %: the items of a paid order cannot change',
                OLD.id, OLD.order_id, status_of_order
                USING ERRCODE = 'integrity_constraint_violation',
                      HINT = 'Refund the order instead.';
        END IF;
        -- The price is the snapshot's; the subtotal follows the quantity.
        NEW.subtotal_cents := (NEW.unit_price_cents::BIGINT * NEW.quantity)::INTEGER;
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION order_items_take_snapshot() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    product_name TEXT;
    unit_cents NUMERIC;
BEGIN
    SELECT p.name, p.price * 100 INTO product_name, unit_cents
    FROM products AS p WHERE p.id = NEW.product_id;
    -- The same conditions as the backfill's items step (sql/backfill/items_batch.sql).
    IF product_name IS NOT NULL AND unit_cents BETWEEN 0 AND 2147483647 AND NEW.quantity >= 0
        AND unit_cents * NEW.quantity <= 2147483647 THEN
        NEW.unit_price_cents := unit_cents::INTEGER;
        NEW.label := product_name;
        NEW.subtotal_cents := (unit_cents * NEW.quantity)::INTEGER;
    END IF;
    RETURN NEW;
END;
$$;

-- The orders of `touched` (text[] or uuid[], as orders.id): totals, pending payments, queue.
CREATE OR REPLACE FUNCTION order_totals_recompute(touched ANYARRAY) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    WITH per_order AS (
        SELECT o.id,
               coalesce(sum(i.subtotal_cents::BIGINT), 0) AS total,
               coalesce(bool_and(i.label IS NOT NULL), true) AS complete
        FROM orders AS o
        LEFT JOIN order_items AS i ON i.order_id = o.id
        WHERE o.id = ANY(touched) AND o.status::TEXT NOT IN ('PAID', 'REFUNDED')
        GROUP BY o.id
    ),
    totalled AS (
        UPDATE orders AS o
        SET amount_total_cents = CASE WHEN per_order.complete AND per_order.total <= 2147483647
                                      THEN per_order.total ELSE 0 END
        FROM per_order
        WHERE o.id = per_order.id
          AND o.amount_total_cents IS DISTINCT FROM CASE
              WHEN per_order.complete AND per_order.total <= 2147483647 THEN per_order.total ELSE 0 END
        RETURNING o.id, o.amount_total_cents
    )
    UPDATE payments AS p
    SET amount_cents = totalled.amount_total_cents, updated_at = now()
    FROM totalled
    WHERE p.order_id = totalled.id
      AND p.status IN ('requires_payment_method', 'requires_confirmation', 'requires_action')
      AND p.amount_cents <> totalled.amount_total_cents;
    IF to_regclass('paytool.backfill_order_queue') IS NOT NULL THEN
        INSERT INTO paytool.backfill_order_queue (order_id)
        SELECT DISTINCT t.id FROM unnest(touched) AS t (id)
        ON CONFLICT (order_id) DO UPDATE
        SET state = 'pending', queued_at = clock_timestamp();
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION order_totals_follow_items() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF current_setting('paytool.backfill', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM order_totals_recompute(ARRAY(SELECT DISTINCT n.order_id FROM new_items AS n));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM order_totals_recompute(ARRAY(SELECT DISTINCT d.order_id FROM old_items AS d));
    ELSE
        PERFORM order_totals_recompute(ARRAY(
            SELECT n.order_id FROM new_items AS n UNION SELECT d.order_id FROM old_items AS d));
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION orders_enqueue_new() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF current_setting('paytool.backfill', true) IS DISTINCT FROM 'on'
        AND to_regclass('paytool.backfill_order_queue') IS NOT NULL THEN
        INSERT INTO paytool.backfill_order_queue (order_id)
        SELECT n.id FROM new_orders AS n
        ON CONFLICT (order_id) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

-- Owner's rights run with the schema of the tables (Prisma's ?schema= included) and nothing
-- a caller could put before it.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION order_totals_follow_items() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION orders_enqueue_new() SET search_path = %I, pg_temp', current_schema());
END;
$$;
REVOKE ALL ON FUNCTION order_totals_recompute(ANYARRAY) FROM PUBLIC;

CREATE OR REPLACE TRIGGER order_items_take_snapshot
    BEFORE INSERT ON order_items
    FOR EACH ROW
    WHEN (NEW.label IS NULL)
    EXECUTE FUNCTION order_items_take_snapshot();

CREATE OR REPLACE TRIGGER order_items_retake_snapshot
    BEFORE UPDATE OF product_id, quantity ON order_items
    FOR EACH ROW
    WHEN (OLD.label IS NULL AND NEW.label IS NULL)
    EXECUTE FUNCTION order_items_take_snapshot();

CREATE OR REPLACE TRIGGER order_totals_follow_inserted_items
    AFTER INSERT ON order_items
    REFERENCING NEW TABLE AS new_items
    FOR EACH STATEMENT
    EXECUTE FUNCTION order_totals_follow_items();

CREATE OR REPLACE TRIGGER order_totals_follow_updated_items
    AFTER UPDATE ON order_items
    REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
    FOR EACH STATEMENT
    EXECUTE FUNCTION order_totals_follow_items();

CREATE OR REPLACE TRIGGER order_totals_follow_deleted_items
    AFTER DELETE ON order_items
    REFERENCING OLD TABLE AS old_items
    FOR EACH STATEMENT
    EXECUTE FUNCTION order_totals_follow_items();

CREATE OR REPLACE TRIGGER orders_enqueue_new
    AFTER INSERT ON orders
    REFERENCING NEW TABLE AS new_orders
    FOR EACH STATEMENT
    EXECUTE FUNCTION orders_enqueue_new();
