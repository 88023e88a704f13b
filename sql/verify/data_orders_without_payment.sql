-- Orders with no payment row (the backfill has not run, or could not total the order).
-- Sample: order ids. $1 = sample size.
WITH missing AS (
    SELECT o.id
    FROM orders AS o
    WHERE NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = o.id)
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM missing;
