-- One batch of the shadow-column copy, run repeatedly by paytool: $1 = last id of the previous
-- batch (NULL for the first), $2 = batch size. Returns the batch's last id as text (NULL when
-- done) and the rows changed. $1 is bound with the type of orders.id (text or uuid).
-- Each batch is its own short transaction; rows already copied are skipped, so it resumes.
-- The batch is a key range (id > $1 AND id <= last id), not a join with the batch's ids: the
-- planner then walks the primary key instead of hashing the whole table at every batch. The
-- last id is taken with ORDER BY, not max(), which uuid lacks.
WITH bounds AS (
    SELECT id AS last_id
    FROM (SELECT id FROM orders WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2) AS batch
    ORDER BY id DESC
    LIMIT 1
),
copied AS (
    UPDATE orders AS o
    SET status_new = o.status::TEXT
    FROM bounds
    WHERE ($1 IS NULL OR o.id > $1) AND o.id <= bounds.last_id AND o.status_new IS NULL
    RETURNING 1
)
SELECT (SELECT last_id::TEXT FROM bounds) AS last_id, (SELECT count(*) FROM copied) AS changed;
