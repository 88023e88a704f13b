-- Orders and their payment naming different Stripe PaymentIntents (or only one of them
-- naming one). Sample: order ids. $1 = sample size.
WITH wrong AS (
    SELECT o.id
    FROM payments AS p
    JOIN orders AS o ON o.id = p.order_id
    WHERE p.stripe_payment_intent_id IS DISTINCT FROM o.stripe_payment_intent_id
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM wrong;
