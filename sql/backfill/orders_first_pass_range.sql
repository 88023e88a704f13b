-- The next batch of the orders step's first pass (orders_first_pass_extent.sql): (last key,
-- rows) of the next $2 orders at 0 after $1, up to $3, read from orders itself by its primary
-- key (the partial index of the orders not totalled is built once this pass is done).
WITH batch AS (
    SELECT id FROM orders
    WHERE amount_total_cents = 0 AND ($1 IS NULL OR id > $1) AND id <= $3
    ORDER BY id LIMIT $2)
SELECT (SELECT id::TEXT FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM batch)
