-- Payments refunded (pending or succeeded refunds) for more than their amount.
-- Sample: payment ids. $1 = sample size.
WITH refunded AS (
    SELECT payment_id, sum(amount_cents::BIGINT) AS total
    FROM refunds
    WHERE status NOT IN ('failed', 'canceled')
    GROUP BY payment_id
),
wrong AS (
    SELECT p.id
    FROM refunded AS r
    JOIN payments AS p ON p.id = r.payment_id
    WHERE r.total > p.amount_cents
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM wrong;
