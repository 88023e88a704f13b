-- The next batch of the payment queue: as items_range.sql, (last key, rows) of the next $2
-- keys after $1, up to $3.
WITH batch AS (
    SELECT order_id FROM paytool.backfill_payment_queue
    WHERE ($1 IS NULL OR order_id > $1) AND order_id <= $3
    ORDER BY order_id LIMIT $2)
SELECT (SELECT order_id::TEXT FROM batch ORDER BY order_id DESC LIMIT 1), (SELECT count(*) FROM batch)
