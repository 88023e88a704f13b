-- Where cooperative workers' ranges end in the orders step's first pass: as
-- items_boundaries.sql, over the orders at 0.
SELECT key::TEXT, total
FROM (SELECT id AS key, row_number() OVER (ORDER BY id) AS n, count(*) OVER () AS total
      FROM orders WHERE amount_total_cents = 0) AS pending
WHERE n % $1 = 0 OR n = total
ORDER BY key
