-- The next batch of pending items: (last key, rows) of the next $2 keys after $1 (NULL: from
-- the first), up to $3. $1 and $3 are bound with the key column's type, text or uuid; the last
-- key comes back as text, taken with ORDER BY because uuid has no max(). Through the partial
-- index of the items that can be snapshotted (migrate step 030): a catch-up reads almost nothing.
-- Items whose product is gone (product_id set to NULL by the foreign key's ON DELETE SET NULL)
-- can never be snapshotted by a batch: they are not in that index, so no run reads them (a
-- run before step 030 is built reads their entries in step 027's, and skips them); the
-- application's write that gives one a product back takes its snapshot (step 029), and
-- items_unresolved.sql still reports them.
WITH batch AS (
    SELECT id FROM order_items
    WHERE label IS NULL AND product_id IS NOT NULL AND ($1 IS NULL OR id > $1) AND id <= $3
    ORDER BY id LIMIT $2)
SELECT (SELECT id::TEXT FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM batch)
