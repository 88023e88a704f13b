-- PAID or REFUNDED orders without paid_at: legacy rows from before the column existed.
-- Sample: order ids. $1 = sample size.
WITH missing AS (
    SELECT id FROM orders WHERE status IN ('PAID', 'REFUNDED') AND paid_at IS NULL
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM missing;
