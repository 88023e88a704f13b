-- One batch of the items step: the key range ($1, $2] of order_items, found by
-- the range query of src/backfill, given as literal bounds so the planner sees how narrow it is
-- ($1 is NULL for the first batch; both are bound with the type of the id column, text or uuid).
-- Takes the price snapshot of every item of the key range that has none and whose product
-- still exists, with exact NUMERIC arithmetic; leaves alone the items whose product is gone
-- (not even read: product_id NULL), whose price or quantity is negative, or whose cents
-- overflow INTEGER (items_unresolved.sql reports them all).
-- One UPDATE over the key range, each item's product read by a subquery (one lookup in its
-- primary key for the check, one for the values): order_items is the only table of the plan,
-- so no statistics can turn it around (joined to products, the planner once started from
-- products and probed the product_id index 200 times), and each item is found once, where a
-- read of the range joined back to the table found it twice (6% of a batch).
-- The WHERE clause and the subtotal read the row being updated, so a concurrent change of
-- quantity is seen (READ COMMITTED re-checks the WHERE clause on the new row version).
WITH snapshotted AS (
    UPDATE order_items AS i
    SET (unit_price_cents, label, subtotal_cents) = (
            SELECT (p.price * 100)::INTEGER, p.name, (p.price * 100 * i.quantity)::INTEGER
            FROM products AS p
            WHERE p.id = i.product_id)
    WHERE ($1 IS NULL OR i.id > $1) AND i.id <= $2
      AND i.label IS NULL AND i.product_id IS NOT NULL AND i.quantity >= 0
      AND (SELECT p.name IS NOT NULL
                  AND p.price * 100 BETWEEN 0 AND 2147483647
                  AND p.price * 100 * i.quantity <= 2147483647
           FROM products AS p
           WHERE p.id = i.product_id)
    RETURNING i.order_id
),
-- An order the orders step could not total because of an item snapshotted now (its product's
-- price was fixed since) is queued again: migrate's triggers leave paytool's own writes alone,
-- so nothing else would. In a first pass the queue holds none of these orders: a lookup each,
-- by its primary key with the batch's orders as one array (no join for the planner to turn
-- around).
requeued AS (
    UPDATE paytool.backfill_order_queue AS q
    SET state = 'pending', queued_at = clock_timestamp()
    WHERE q.order_id = ANY (ARRAY(SELECT order_id FROM snapshotted)) AND q.state <> 'pending'
    RETURNING 1
)
SELECT count(*) AS changed, 0::BIGINT AS payments FROM snapshotted;
