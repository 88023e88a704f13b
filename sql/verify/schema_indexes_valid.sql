-- Indexes that exist but are not usable: INVALID or not ready (a CREATE INDEX CONCURRENTLY
-- that failed or was interrupted). They cost writes and serve no query; a unique one still
-- rejects duplicates on new rows. $1 = sample size.
WITH broken AS (
    SELECT c.relname AS name
    FROM pg_index AS i
    JOIN pg_class AS c ON c.oid = i.indexrelid
    WHERE c.relnamespace = quote_ident(current_schema())::REGNAMESPACE
      AND NOT (i.indisvalid AND i.indisready AND i.indislive)
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$1], '{}') FROM broken;
