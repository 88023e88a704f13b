-- The next batch of the order queue (what the application inserted or changed since the last
-- run, step 029's triggers; once, every order not totalled yet): never the orders settled.
-- As items_range.sql: (last key, rows) of the next $2 keys after $1, up to $3.
WITH batch AS (
    SELECT order_id FROM paytool.backfill_order_queue
    WHERE state = 'pending' AND ($1 IS NULL OR order_id > $1) AND order_id <= $3
    ORDER BY order_id LIMIT $2)
SELECT (SELECT order_id::TEXT FROM batch ORDER BY order_id DESC LIMIT 1), (SELECT count(*) FROM batch)
