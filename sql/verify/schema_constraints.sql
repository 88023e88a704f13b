-- Constraints of SPEC §3 missing or defined differently, in tables that exist. Whether they
-- are validated is a check of its own, so ' NOT VALID' is ignored here.
-- $1 = expected 'table.constraint definition' lines, $2 = sample size.
WITH expected AS (
    SELECT split_part(line, ' ', 1) AS name, line
    FROM unnest($1::TEXT[]) AS line
),
actual AS (
    SELECT conrelid::REGCLASS::TEXT || '.' || conname AS name,
           conrelid::REGCLASS::TEXT || '.' || conname || ' '
           || regexp_replace(pg_get_constraintdef(oid), ' NOT VALID$', '') AS line
    FROM pg_constraint
    WHERE connamespace = quote_ident(current_schema())::REGNAMESPACE
),
wrong AS (
    SELECT e.name
    FROM expected AS e
    LEFT JOIN actual AS a ON a.name = e.name
    WHERE a.line IS DISTINCT FROM e.line
      AND to_regclass(quote_ident(split_part(e.name, '.', 1))) IS NOT NULL
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$2], '{}') FROM wrong;
