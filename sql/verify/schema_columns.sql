-- Columns whose type, nullability or default differ from SPEC §3, or that are missing, in
-- tables that exist (a missing table is the tables check's finding).
-- $1 = expected 'table.column definition' lines, $2 = sample size.
WITH expected AS (
    SELECT split_part(line, ' ', 1) AS name, line
    FROM unnest($1::TEXT[]) AS line
),
actual AS (
    SELECT c.relname || '.' || a.attname AS name,
           c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
           || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS line
    FROM pg_attribute AS a
    JOIN pg_class AS c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = quote_ident(current_schema())::REGNAMESPACE AND c.relkind IN ('r', 'p')
      AND a.attnum > 0 AND NOT a.attisdropped
),
wrong AS (
    SELECT e.name
    FROM expected AS e
    LEFT JOIN actual AS a ON a.name = e.name
    WHERE a.line IS DISTINCT FROM e.line
      AND to_regclass(quote_ident(split_part(e.name, '.', 1))) IS NOT NULL
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$2], '{}') FROM wrong;
