-- Orders outside the window that listed PaymentIntents belong to: named by their metadata
-- ($1, order ids) or linked by id ($2, PaymentIntent ids). Such PaymentIntents are no orphans.
-- Returns (order id, its PaymentIntent id).
SELECT id, stripe_payment_intent_id FROM orders WHERE id = ANY($1)
UNION
SELECT id, stripe_payment_intent_id FROM orders WHERE stripe_payment_intent_id = ANY($2);
