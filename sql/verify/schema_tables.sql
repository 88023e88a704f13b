-- Tables of SPEC §3 that do not exist. $1 = expected table names, $2 = sample size.
WITH missing AS (
    SELECT name FROM unnest($1::TEXT[]) AS name
    WHERE to_regclass(quote_ident(name)) IS NULL
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$2], '{}') FROM missing;
