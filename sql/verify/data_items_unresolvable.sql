-- Items without a snapshot that cannot get one: the product is gone, or price × quantity
-- overflows INTEGER cents. Their orders have no total and no payment. Sample: item ids.
-- $1 = sample size.
WITH unresolvable AS (
    SELECT i.id
    FROM order_items AS i
    LEFT JOIN products AS p ON p.id = i.product_id
    WHERE i.label IS NULL
      AND (p.id IS NULL OR p.price < 0 OR i.quantity < 0 OR p.price * 100 * i.quantity > 2147483647)
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM unresolvable;
