-- The orders step's pending rows when it starts: how many, and the largest key.
SELECT (SELECT count(*) FROM paytool.backfill_order_queue WHERE state = 'pending'),
       (SELECT order_id::TEXT FROM paytool.backfill_order_queue WHERE state = 'pending'
        ORDER BY order_id DESC LIMIT 1)
