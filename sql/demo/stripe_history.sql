-- The demo shop's last 30 days as if it had recorded its Stripe PaymentIntents all along:
-- every order of the window gets a PaymentIntent id (on the order and its payment), paid
-- orders a paid_at two minutes after creation, refunded orders their refund row.
UPDATE orders
SET stripe_payment_intent_id = 'pi_demo_' || substr(md5(id), 1, 16),
    paid_at = CASE WHEN status IN ('PAID', 'REFUNDED') THEN created_at + INTERVAL '2 minutes' END
WHERE created_at >= (now() AT TIME ZONE 'UTC') - INTERVAL '30 days';

UPDATE payments AS p
SET stripe_payment_intent_id = o.stripe_payment_intent_id,
    succeeded_at = o.paid_at
FROM orders AS o
WHERE o.id = p.order_id AND o.stripe_payment_intent_id IS NOT NULL;

INSERT INTO refunds (payment_id, stripe_refund_id, amount_cents, currency, status, reason)
SELECT p.id, 're_demo_' || substr(md5(o.id), 1, 16), p.amount_cents, p.currency, 'succeeded', 'requested_by_customer'
FROM orders AS o
JOIN payments AS p ON p.order_id = o.id
WHERE o.status = 'REFUNDED' AND o.stripe_payment_intent_id IS NOT NULL AND p.amount_cents > 0;
