-- Foreign keys whose referencing columns lead no valid index: every DELETE or key UPDATE of
-- the referenced row scans the whole referencing table. $1 = sample size.
WITH unindexed AS (
    SELECT con.conrelid::REGCLASS::TEXT || '.' || con.conname AS name
    FROM pg_constraint AS con
    WHERE con.contype = 'f' AND con.connamespace = quote_ident(current_schema())::REGNAMESPACE
      AND NOT EXISTS (
          SELECT 1 FROM pg_index AS i
          WHERE i.indrelid = con.conrelid AND i.indisvalid
            AND (i.indkey::INT2[])[0:cardinality(con.conkey) - 1] @> con.conkey
            AND (i.indkey::INT2[])[0:cardinality(con.conkey) - 1] <@ con.conkey
      )
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$1], '{}') FROM unindexed;
