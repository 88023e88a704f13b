-- PAID orders whose payment is not succeeded. Sample: order ids. $1 = sample size.
WITH wrong AS (
    SELECT o.id
    FROM orders AS o
    JOIN payments AS p ON p.order_id = o.id
    WHERE o.status = 'PAID' AND p.status <> 'succeeded'
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM wrong;
