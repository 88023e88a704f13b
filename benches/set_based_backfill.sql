-- The backfill as three set-based statements, the fastest way to the same end state and
-- the yardstick of benches/backfill.rs. Each statement locks every row it writes until the
-- end of its transaction: not something to run on a live database. Each statement reads the
-- table the one before rewrote, so its statistics are refreshed in between (without, a stale
-- estimate once made the payments INSERT scan order_items once per order: minutes, not seconds).
-- It marks itself as paytool's batches do, so that migrate step 029's triggers (which keep
-- derived data true after the application's writes) leave it alone, as they leave paytool.
SET paytool.backfill = 'on';

UPDATE order_items AS i
SET unit_price_cents = (p.price * 100)::INTEGER,
    label = p.name,
    subtotal_cents = (p.price * 100 * i.quantity)::INTEGER
FROM products AS p
WHERE p.id = i.product_id
  AND i.label IS NULL
  AND p.price >= 0 AND i.quantity >= 0
  AND p.price * 100 * i.quantity <= 2147483647;

ANALYZE order_items;

UPDATE orders AS o
SET amount_total_cents = t.total::INTEGER
FROM (
    SELECT order_id, sum(subtotal_cents::BIGINT) AS total, bool_and(label IS NOT NULL) AS complete
    FROM order_items GROUP BY order_id
) AS t
WHERE t.order_id = o.id AND t.complete AND o.amount_total_cents = 0
  AND t.total BETWEEN 1 AND 2147483647;

ANALYZE orders;

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
FROM orders AS o
WHERE NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = o.id)
  AND NOT EXISTS (SELECT 1 FROM order_items AS i WHERE i.order_id = o.id AND i.label IS NULL)
  AND o.amount_total_cents = (SELECT coalesce(sum(i.subtotal_cents), 0) FROM order_items AS i WHERE i.order_id = o.id)
ON CONFLICT (order_id) DO NOTHING;
