-- What keeps the legacy application's enum filters working on orders.status (migration step
-- 024): the enum type, the `text = order_status` and `text <> order_status` operators and their
-- functions, exactly. Once `paytool migrate cleanup` dropped the type, none of them may be left.
-- $1 = expected 'kind definition' lines, $2 = sample size.
WITH expected AS (
    SELECT line FROM unnest($1::TEXT[]) AS line
    WHERE to_regtype('order_status') IS NOT NULL
),
actual AS (
    SELECT 'type order_status ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) AS line
    FROM pg_type AS t
    JOIN pg_enum AS e ON e.enumtypid = t.oid
    WHERE t.oid = to_regtype('order_status')
    GROUP BY t.oid
    UNION ALL
    SELECT 'operator ' || o.oprname || '(' || format_type(o.oprleft, NULL) || ','
           || format_type(o.oprright, NULL) || ') ' || o.oprcode::TEXT
    FROM pg_operator AS o
    WHERE o.oprnamespace = quote_ident(current_schema())::REGNAMESPACE
      AND (o.oprright = to_regtype('order_status') OR o.oprcode::TEXT LIKE 'order\_status\_legacy\_%')
    UNION ALL
    SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
           || p.provolatile::TEXT || ' ' || l.lanname || ' ' || btrim(p.prosrc)
    FROM pg_proc AS p
    JOIN pg_language AS l ON l.oid = p.prolang
    WHERE p.pronamespace = quote_ident(current_schema())::REGNAMESPACE
      AND p.proname IN ('order_status_legacy_eq', 'order_status_legacy_ne')
),
wrong AS (
    SELECT 'missing or different: ' || line AS name FROM expected
    WHERE line NOT IN (SELECT line FROM actual)
    UNION ALL
    SELECT 'unexpected: ' || line FROM actual
    WHERE line NOT IN (SELECT line FROM expected)
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$2], '{}') FROM wrong;
