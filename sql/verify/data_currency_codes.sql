-- Currency codes that are not three upper-case letters (ISO 4217 as stored by paytool;
-- Stripe's lower-case codes must be upper-cased on the way in). Sample: 'table:id'.
-- $1 = sample size.
WITH wrong AS (
    SELECT 'orders:' || id AS id FROM orders WHERE currency !~ '^[A-Z]{3}$'
    UNION ALL
    SELECT 'payments:' || id FROM payments WHERE currency !~ '^[A-Z]{3}$'
    UNION ALL
    SELECT 'refunds:' || id FROM refunds WHERE currency !~ '^[A-Z]{3}$'
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM wrong;
