-- Mark an order PAID because Stripe says its PaymentIntent succeeded; paid_at from the charge.
-- Only PENDING or FAILED orders: a CANCELLED or REFUNDED one needs a person. $1 has the type of
-- orders.id.
WITH before AS (
    SELECT to_jsonb(o) AS row FROM orders AS o WHERE o.id = $1 AND o.status IN ('PENDING', 'FAILED') FOR UPDATE
),
paid AS (
    UPDATE orders SET status = 'PAID', paid_at = coalesce(paid_at, $2), updated_at = CURRENT_TIMESTAMP
    WHERE id = $1 AND status IN ('PENDING', 'FAILED')
    RETURNING to_jsonb(orders) AS row
)
SELECT (SELECT row FROM before), (SELECT row FROM paid);
