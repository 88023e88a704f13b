-- Once, when the payment queue is created: orders already totalled (by an earlier paytool,
-- whose payments step read every order) that still have no payment row.
INSERT INTO paytool.backfill_payment_queue (order_id)
SELECT o.id
FROM orders AS o
WHERE o.amount_total_cents <> 0
  AND NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = o.id)
ON CONFLICT (order_id) DO NOTHING;
