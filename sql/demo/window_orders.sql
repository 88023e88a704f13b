-- The orders the demo's Stripe simulator mirrors: (id, status, total, currency, PaymentIntent
-- id, created, paid_at, has a payment row), as epoch seconds.
SELECT o.id, o.status::TEXT, o.amount_total_cents::BIGINT, o.currency, o.stripe_payment_intent_id,
       extract(EPOCH FROM o.created_at)::BIGINT, extract(EPOCH FROM o.paid_at)::BIGINT,
       p.id IS NOT NULL
FROM orders AS o
LEFT JOIN payments AS p ON p.order_id = o.id
WHERE o.stripe_payment_intent_id IS NOT NULL
ORDER BY o.id;
