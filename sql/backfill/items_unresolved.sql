-- Items the items step cannot snapshot, by reason, with up to $1 sample ids each.
-- Most are items whose product was deleted (the foreign key set product_id to NULL): no run can
-- snapshot them, a shop may keep many, and this report is read at every run. They are counted
-- as the items without a snapshot (027's index) less those with a product (030's index), two
-- counts that read the indexes alone once the visibility map says their pages are all-visible;
-- a filter on product_id would read every such item's row at every run. Their sample, the
-- first $1 by id, stops there instead of sorting them all.
-- The others have a product, whose price or cents make a snapshot impossible: they are among
-- the items the items step walks (030's index), so reading them costs what it reads already.
WITH other AS (
    SELECT i.id,
           CASE
               WHEN p.id IS NULL THEN 'product_deleted'
               WHEN p.price < 0 OR i.quantity < 0 THEN 'negative_price_or_quantity'
               ELSE 'amount_overflows_integer'
           END AS reason
    FROM order_items AS i
    LEFT JOIN products AS p ON p.id = i.product_id
    WHERE i.label IS NULL AND i.product_id IS NOT NULL
      AND (p.id IS NULL OR p.price < 0 OR i.quantity < 0
           OR p.price * 100 > 2147483647 OR p.price * 100 * i.quantity > 2147483647)
),
deleted AS MATERIALIZED (
    SELECT (SELECT count(*) FROM order_items WHERE label IS NULL)
           - (SELECT count(*) FROM order_items WHERE label IS NULL AND product_id IS NOT NULL)
           + (SELECT count(*) FROM other WHERE reason = 'product_deleted') AS rows,
           ARRAY(SELECT id::TEXT
                 FROM ((SELECT id FROM order_items
                        WHERE label IS NULL AND product_id IS NULL ORDER BY id LIMIT $1)
                       UNION ALL
                       SELECT id FROM other WHERE reason = 'product_deleted') AS d
                 ORDER BY id LIMIT $1) AS sample
)
SELECT 'product_deleted' AS reason, rows, sample FROM deleted WHERE rows > 0
UNION ALL
SELECT reason, count(*), (array_agg(id::TEXT ORDER BY id))[1:$1]
FROM other WHERE reason <> 'product_deleted' GROUP BY reason
ORDER BY reason;
