-- Orders the orders step could not total, by reason, with up to $1 sample ids each. The reason
-- is the state the orders batch left in the queue, so the report reads the queue alone and
-- costs the unresolved queue rows, not their orders and items. A row left `unresolved` by a
-- paytool that did not record the reason yet is looked up in its items.
WITH unresolved AS (
    SELECT q.order_id AS id,
           CASE WHEN q.state <> 'unresolved' THEN q.state
                WHEN EXISTS (SELECT 1 FROM order_items AS i WHERE i.order_id = q.order_id AND i.label IS NULL)
                    THEN 'items_without_snapshot'
                ELSE 'total_overflows_integer'
           END AS reason
    FROM paytool.backfill_order_queue AS q
    WHERE q.state <> 'pending'
)
SELECT reason, count(*) AS rows, (array_agg(id::TEXT ORDER BY id))[1:$1] AS sample
FROM unresolved GROUP BY reason ORDER BY reason;
