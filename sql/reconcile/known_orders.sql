-- Orders outside the window that listed PaymentIntents belong to: named by their metadata
-- ($1, order ids) or linked by id ($2, PaymentIntent ids). Such PaymentIntents are no orphans.
-- Returns (order id as text, its PaymentIntent id). $1 is an array of the type of orders.id.
SELECT id::TEXT, stripe_payment_intent_id FROM orders WHERE id = ANY($1)
UNION
SELECT id::TEXT, stripe_payment_intent_id FROM orders WHERE stripe_payment_intent_id = ANY($2);
