-- Items without a snapshot although they could have one: the product exists and the amounts
-- fit in INTEGER cents (run paytool backfill payments). Sample: item ids. $1 = sample size.
WITH missing AS (
    SELECT i.id
    FROM order_items AS i
    JOIN products AS p ON p.id = i.product_id
    WHERE i.label IS NULL
      AND p.price >= 0 AND i.quantity >= 0
      AND p.price * 100 * i.quantity <= 2147483647
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM missing;
