-- One batch of the shadow-column copy, run repeatedly by paytool: $1 = last id of the previous
-- batch, $2 = batch size. Returns the batch's last id (NULL when done) and the rows changed.
-- Each batch is its own short transaction; rows already copied are skipped, so it resumes.
WITH batch AS (
    SELECT id FROM orders WHERE id > $1 ORDER BY id LIMIT $2
),
copied AS (
    UPDATE orders AS o
    SET status_new = o.status::TEXT
    FROM batch
    WHERE o.id = batch.id AND o.status_new IS NULL
    RETURNING 1
)
SELECT (SELECT max(id) FROM batch) AS last_id, (SELECT count(*) FROM copied) AS changed;
