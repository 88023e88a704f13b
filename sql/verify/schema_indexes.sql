-- Indexes of SPEC §3 missing or defined differently, on tables that exist. The expected lines
-- name the schema `public`; the tables' own schema (Prisma's ?schema=) stands for it.
-- $1 = expected pg_get_indexdef lines, $2 = sample size. A line starting with `optional ` is an
-- index `paytool backfill payments` builds after its first complete pass: exact if present.
WITH lines AS (
    SELECT line LIKE 'optional %' AS optional, regexp_replace(line, '^optional ', '') AS line
    FROM unnest($1::TEXT[]) AS line
),
expected AS (
    SELECT substring(line FROM 'INDEX (\S+) ON public\.') AS name,
           substring(line FROM ' ON public\.(\S+) ') AS table_name,
           line, optional
    FROM lines
),
wrong AS (
    SELECT e.name
    FROM expected AS e
    LEFT JOIN pg_class AS c ON c.relname = e.name AND c.relnamespace = quote_ident(current_schema())::REGNAMESPACE AND c.relkind = 'i'
    WHERE ((c.oid IS NULL AND NOT e.optional)
           OR replace(pg_get_indexdef(c.oid), ' ON ' || quote_ident(current_schema()) || '.', ' ON public.') <> e.line)
      AND to_regclass(quote_ident(e.table_name)) IS NOT NULL
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$2], '{}') FROM wrong;
