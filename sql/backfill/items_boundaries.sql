-- Where cooperative workers' ranges end: every $1-th pending key and the last one, in order,
-- as text, each with the number of pending keys (as items_range.sql: not the items whose
-- product is gone).
SELECT key::TEXT, total
FROM (SELECT id AS key, row_number() OVER (ORDER BY id) AS n, count(*) OVER () AS total
      FROM order_items WHERE label IS NULL AND product_id IS NOT NULL) AS pending
WHERE n % $1 = 0 OR n = total
ORDER BY key
