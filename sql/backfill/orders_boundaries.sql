-- Where cooperative workers' ranges end: as items_boundaries.sql, over the order queue.
SELECT key::TEXT, total
FROM (SELECT order_id AS key, row_number() OVER (ORDER BY order_id) AS n, count(*) OVER () AS total
      FROM paytool.backfill_order_queue WHERE state = 'pending') AS pending
WHERE n % $1 = 0 OR n = total
ORDER BY key
