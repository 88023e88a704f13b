-- Indexes of SPEC §3 missing or defined differently, on tables that exist.
-- $1 = expected pg_get_indexdef lines, $2 = sample size.
WITH expected AS (
    SELECT substring(line FROM 'INDEX (\S+) ON public\.') AS name,
           substring(line FROM ' ON public\.(\S+) ') AS table_name,
           line
    FROM unnest($1::TEXT[]) AS line
),
wrong AS (
    SELECT e.name
    FROM expected AS e
    LEFT JOIN pg_class AS c ON c.relname = e.name AND c.relnamespace = 'public'::REGNAMESPACE AND c.relkind = 'i'
    WHERE (c.oid IS NULL OR pg_get_indexdef(c.oid) <> e.line)
      AND to_regclass(format('public.%I', e.table_name)) IS NOT NULL
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$2], '{}') FROM wrong;
