-- Rollback of the whole payment system, back to the legacy schema of SPEC §2, in ONE
-- transaction (all or nothing). It DESTROYS payment data (payments, payment_events, refunds,
-- snapshots, totals, PaymentIntent links): paytool runs it only when told so explicitly.
-- Every statement tolerates a partially applied migration.
-- Converting orders.status back to the enum rewrites orders under ACCESS EXCLUSIVE.
DROP TABLE IF EXISTS refunds;
DROP TABLE IF EXISTS payment_events;
DROP TABLE IF EXISTS payments;

DROP TRIGGER IF EXISTS order_items_snapshot_immutable ON order_items;
DROP FUNCTION IF EXISTS order_items_snapshot_immutable();
-- Step 029: derived data following the application.
DROP TRIGGER IF EXISTS order_items_take_snapshot ON order_items;
DROP TRIGGER IF EXISTS order_items_retake_snapshot ON order_items;
DROP TRIGGER IF EXISTS order_totals_follow_inserted_items ON order_items;
DROP TRIGGER IF EXISTS order_totals_follow_updated_items ON order_items;
DROP TRIGGER IF EXISTS order_totals_follow_deleted_items ON order_items;
DROP TRIGGER IF EXISTS orders_enqueue_new ON orders;
DROP FUNCTION IF EXISTS order_items_take_snapshot();
DROP FUNCTION IF EXISTS order_totals_follow_items();
DROP FUNCTION IF EXISTS order_totals_recompute(ANYARRAY);
DROP FUNCTION IF EXISTS orders_enqueue_new();
DROP TRIGGER IF EXISTS orders_status_sync ON orders;
DROP FUNCTION IF EXISTS orders_status_sync();
-- The legacy application's enum comparisons (step 024): the column is the enum again below.
DROP OPERATOR IF EXISTS = (TEXT, order_status);
DROP OPERATOR IF EXISTS <> (TEXT, order_status);
DROP FUNCTION IF EXISTS order_status_legacy_eq(TEXT, order_status);
DROP FUNCTION IF EXISTS order_status_legacy_ne(TEXT, order_status);

ALTER TABLE order_items
    DROP CONSTRAINT IF EXISTS order_items_snapshot_check,
    DROP COLUMN IF EXISTS unit_price_cents,
    DROP COLUMN IF EXISTS label,
    DROP COLUMN IF EXISTS subtotal_cents;
DROP INDEX IF EXISTS order_items_product_id_idx;
DROP INDEX IF EXISTS order_items_pending_snapshot_idx;
DROP INDEX IF EXISTS order_items_resolvable_snapshot_idx;

ALTER TABLE stocks
    DROP CONSTRAINT IF EXISTS stocks_machine_id_slot_number_key,
    DROP CONSTRAINT IF EXISTS stocks_quantity_non_negative;
DROP INDEX IF EXISTS stocks_machine_id_slot_number_key;
DROP INDEX IF EXISTS stocks_product_id_idx;

ALTER TABLE orders
    DROP CONSTRAINT IF EXISTS orders_stripe_payment_intent_id_key,
    DROP CONSTRAINT IF EXISTS orders_status_new_not_null;
DROP INDEX IF EXISTS orders_stripe_payment_intent_id_key;
DROP INDEX IF EXISTS orders_user_id_created_at_idx;
DROP INDEX IF EXISTS orders_machine_id_idx;
DROP INDEX IF EXISTS orders_pending_total_idx;
DROP INDEX IF EXISTS orders_status_new_idx;
ALTER TABLE orders
    DROP COLUMN IF EXISTS status_new,
    DROP COLUMN IF EXISTS amount_total_cents,
    DROP COLUMN IF EXISTS currency,
    DROP COLUMN IF EXISTS stripe_payment_intent_id,
    DROP COLUMN IF EXISTS paid_at,
    DROP COLUMN IF EXISTS receipt_url;
-- `paytool migrate cleanup` dropped the enum type: the legacy schema needs it back.
DO $$
BEGIN
    IF to_regtype('order_status') IS NULL THEN
        CREATE TYPE order_status AS ENUM ('PENDING', 'PAID', 'FAILED', 'CANCELLED', 'REFUNDED');
    END IF;
END;
$$;
ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;
ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::order_status;
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'PENDING';
CREATE INDEX IF NOT EXISTS orders_status_idx ON orders (status);
-- dropped as redundant by `paytool migrate cleanup` (026); the legacy schema has it
CREATE INDEX IF NOT EXISTS orders_user_id_idx ON orders (user_id);

ALTER TABLE users DROP COLUMN IF EXISTS stripe_customer_id;

DROP SCHEMA IF EXISTS paytool CASCADE;
