-- Link an order (and its payment) to the PaymentIntent tagged with its id, only where no link
-- exists yet. Returns the order before and after. $1 has the type of orders.id.
WITH before AS (
    SELECT to_jsonb(o) AS row FROM orders AS o WHERE o.id = $1 AND o.stripe_payment_intent_id IS NULL FOR UPDATE
),
linked AS (
    UPDATE orders SET stripe_payment_intent_id = $2, updated_at = CURRENT_TIMESTAMP
    WHERE id = $1 AND stripe_payment_intent_id IS NULL
    RETURNING to_jsonb(orders) AS row
),
payment AS (
    UPDATE payments SET stripe_payment_intent_id = $2, updated_at = CURRENT_TIMESTAMP
    WHERE order_id = $1 AND stripe_payment_intent_id IS NULL AND EXISTS (SELECT 1 FROM linked)
)
SELECT (SELECT row FROM before), (SELECT row FROM linked);
