-- One batch of the payments step, over the key range ($1, $2] of the payment queue (orders
-- an earlier paytool totalled without writing their payment: the orders step now writes each
-- payment with its total, orders_batch.sql): one payments row per queued order that has none,
-- whose items are all snapshotted and whose total is their sum. The status is the Stripe
-- PaymentIntent status the order status implies: a refunded payment stays succeeded (refunds
-- are rows of their own), a failed one goes back to requires_payment_method.
-- Queue rows leave once their order has its payment (or is gone); an order whose total
-- changed meanwhile stays queued and is reported as unresolved. Returns the payments written,
-- twice: as the step's changes and as its payments.
WITH created AS (
    INSERT INTO payments (order_id, stripe_payment_intent_id, amount_cents, currency, status,
                          succeeded_at, created_at, updated_at)
    SELECT o.id, o.stripe_payment_intent_id, o.amount_total_cents, o.currency,
           CASE o.status
               WHEN 'PAID' THEN 'succeeded'
               WHEN 'REFUNDED' THEN 'succeeded'
               WHEN 'CANCELLED' THEN 'canceled'
               ELSE 'requires_payment_method'
           END,
           CASE WHEN o.status IN ('PAID', 'REFUNDED') THEN o.paid_at END,
           o.created_at, o.updated_at
    FROM paytool.backfill_payment_queue AS q
    JOIN orders AS o ON o.id = q.order_id
    WHERE ($1 IS NULL OR q.order_id > $1) AND q.order_id <= $2
      AND NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = o.id)
      AND NOT EXISTS (SELECT 1 FROM order_items AS i WHERE i.order_id = o.id AND i.label IS NULL)
      AND o.amount_total_cents = (SELECT coalesce(sum(i.subtotal_cents), 0) FROM order_items AS i WHERE i.order_id = o.id)
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id
),
dequeued AS (
    DELETE FROM paytool.backfill_payment_queue AS q
    WHERE ($1 IS NULL OR q.order_id > $1) AND q.order_id <= $2
      AND (q.order_id IN (SELECT order_id FROM created)
           OR EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = q.order_id)
           OR NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.id = q.order_id))
    RETURNING 1
)
SELECT count(*) AS changed, count(*) AS payments FROM created;
