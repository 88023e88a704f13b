-- Orders whose total is final and that still wait for their payment row, consumed by the
-- payments step, which reads only what waits here. The orders step writes each payment with
-- its order's total, in the same batch; what waits here is what an earlier paytool left: the
-- orders it totalled without a payment (seeded once, payment_queue_seed.sql), and the rows its
-- orders batches queued for a payments step that had not run yet.
-- order_id takes the type of orders.id, whatever it is (text, or uuid with Prisma's @db.Uuid),
-- from the table itself: the queue joins orders on it.
-- Run only when the queue is missing, or was made by a paytool that gave it the wrong type: its
-- rows are then queued again from orders (payment_queue_seed.sql), in the same transaction.
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS paytool.backfill_payment_queue;
CREATE TABLE paytool.backfill_payment_queue AS
SELECT id AS order_id, now() AS queued_at FROM orders WITH NO DATA;
-- The table was created empty in this same transaction, and only paytool reads it: nothing to
-- scan, nobody to block.
-- squawk-ignore constraint-missing-not-valid, adding-serial-primary-key-field
ALTER TABLE paytool.backfill_payment_queue ADD CONSTRAINT backfill_payment_queue_pkey PRIMARY KEY (order_id);
-- squawk-ignore adding-not-nullable-field
ALTER TABLE paytool.backfill_payment_queue ALTER COLUMN queued_at SET NOT NULL;
ALTER TABLE paytool.backfill_payment_queue ALTER COLUMN queued_at SET DEFAULT now();
