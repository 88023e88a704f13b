-- One batch of the shadow-column copy, run repeatedly by paytool: $1 = last id of the previous
-- batch, $2 = batch size. Returns the batch's last id (NULL when done) and the rows changed.
-- Each batch is its own short transaction; rows already copied are skipped, so it resumes.
-- The batch is a key range (id > $1 AND id <= last_id), not a join with the batch's ids: the
-- planner then walks the primary key instead of hashing the whole table at every batch.
WITH bounds AS (
    SELECT max(id) AS last_id
    FROM (SELECT id FROM orders WHERE id > $1 ORDER BY id LIMIT $2) AS batch
),
copied AS (
    UPDATE orders AS o
    SET status_new = o.status::TEXT
    FROM bounds
    WHERE o.id > $1 AND o.id <= bounds.last_id AND o.status_new IS NULL
    RETURNING 1
)
SELECT (SELECT last_id FROM bounds) AS last_id, (SELECT count(*) FROM copied) AS changed;
