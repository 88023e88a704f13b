-- The orders the demo's Stripe simulator mirrors: (id, status, total, currency, PaymentIntent
-- id, created, paid_at, has a payment row), as epoch seconds.
SELECT o.id::TEXT AS id, o.status::TEXT AS status, o.amount_total_cents::BIGINT AS total,
       o.currency, o.stripe_payment_intent_id AS payment_intent_id,
       extract(EPOCH FROM o.created_at)::BIGINT AS created, extract(EPOCH FROM o.paid_at)::BIGINT AS paid_at,
       p.id IS NOT NULL AS has_payment
FROM orders AS o
LEFT JOIN payments AS p ON p.order_id = o.id
WHERE o.stripe_payment_intent_id IS NOT NULL
ORDER BY o.id;
