-- The items step's pending rows when it starts: how many, and the largest key (the run stops
-- there; rows the application adds later are left whole for the next run). As items_range.sql:
-- not the items whose product is gone (migrate step 030's index holds the others alone).
SELECT (SELECT count(*) FROM order_items WHERE label IS NULL AND product_id IS NOT NULL),
       (SELECT id::TEXT FROM order_items WHERE label IS NULL AND product_id IS NOT NULL
        ORDER BY id DESC LIMIT 1)
