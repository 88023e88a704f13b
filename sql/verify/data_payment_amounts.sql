-- Payments whose amount or currency differ from their order's. Sample: order ids.
-- $1 = sample size.
WITH wrong AS (
    SELECT o.id
    FROM payments AS p
    JOIN orders AS o ON o.id = p.order_id
    WHERE p.amount_cents <> o.amount_total_cents OR p.currency <> o.currency
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM wrong;
