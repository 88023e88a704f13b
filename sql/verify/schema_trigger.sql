-- The immutability trigger of order_items snapshots (SPEC §3): present with its definition,
-- enabled, and its function present. $1 = expected pg_get_triggerdef lines, $2 = sample size.
WITH expected AS (
    SELECT substring(line FROM 'TRIGGER (\S+) ') AS name, line
    FROM unnest($1::TEXT[]) AS line
),
wrong AS (
    SELECT e.name
    FROM expected AS e
    LEFT JOIN pg_trigger AS t ON t.tgname = e.name AND NOT t.tgisinternal
    LEFT JOIN pg_class AS c ON c.oid = t.tgrelid AND c.relnamespace = quote_ident(current_schema())::REGNAMESPACE
    WHERE c.oid IS NULL
       OR replace(pg_get_triggerdef(t.oid), ' ON ' || quote_ident(current_schema()) || '.', ' ON public.') <> e.line
       OR t.tgenabled = 'D'
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$2], '{}') FROM wrong;
