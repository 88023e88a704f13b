-- The payments step's pending rows when it starts: how many, and the largest key.
SELECT (SELECT count(*) FROM paytool.backfill_payment_queue),
       (SELECT order_id::TEXT FROM paytool.backfill_payment_queue ORDER BY order_id DESC LIMIT 1)
