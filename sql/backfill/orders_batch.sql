-- One batch of the orders step ($1 last orders.id, $2 batch size, $3 the
-- step's last key when it started): amount_total_cents = the sum
-- of the item subtotals, for orders not yet totalled (0) whose items are all snapshotted.
WITH bounds AS (
    SELECT max(id) AS last_id, count(*) AS scanned
    FROM (SELECT id FROM orders WHERE id > $1 AND id <= $3 ORDER BY id LIMIT $2) AS batch
),
totals AS (
    SELECT o.id, sum(i.subtotal_cents::BIGINT) AS total
    FROM orders AS o
    JOIN order_items AS i ON i.order_id = o.id
    WHERE o.id > $1 AND o.id <= (SELECT last_id FROM bounds)
      AND o.amount_total_cents = 0
    GROUP BY o.id
    HAVING bool_and(i.label IS NOT NULL)
),
totalled AS (
    UPDATE orders AS o
    SET amount_total_cents = totals.total::INTEGER
    FROM totals
    WHERE o.id = totals.id AND o.amount_total_cents = 0 AND totals.total BETWEEN 1 AND 2147483647
    RETURNING o.id
)
SELECT (SELECT last_id FROM bounds) AS last_id,
       (SELECT scanned FROM bounds) AS scanned,
       (SELECT count(*) FROM totalled) AS changed;
