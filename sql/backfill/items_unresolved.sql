-- Items the items step cannot snapshot, by reason, with up to $1 sample ids each.
WITH unresolved AS (
    SELECT i.id,
           CASE
               WHEN p.id IS NULL THEN 'product_deleted'
               WHEN p.price < 0 OR i.quantity < 0 THEN 'negative_price_or_quantity'
               ELSE 'amount_overflows_integer'
           END AS reason
    FROM order_items AS i
    LEFT JOIN products AS p ON p.id = i.product_id
    WHERE i.label IS NULL
      AND (p.id IS NULL OR p.price < 0 OR i.quantity < 0
           OR p.price * 100 > 2147483647 OR p.price * 100 * i.quantity > 2147483647)
)
SELECT reason, count(*) AS rows, (array_agg(id::TEXT ORDER BY id))[1:$1] AS sample
FROM unresolved GROUP BY reason ORDER BY reason;
