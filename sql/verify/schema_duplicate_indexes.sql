-- Indexes that duplicate another of the same table exactly (same columns, operator classes,
-- expressions and predicate): every write pays for both, queries use one. $1 = sample size.
WITH duplicates AS (
    SELECT a.relname || ' = ' || b.relname AS name
    FROM pg_index AS ia
    JOIN pg_index AS ib
      ON ib.indrelid = ia.indrelid AND ib.indexrelid > ia.indexrelid
     AND ib.indkey::TEXT = ia.indkey::TEXT
     AND ib.indclass::TEXT = ia.indclass::TEXT
     AND ib.indoption::TEXT = ia.indoption::TEXT
     AND coalesce(pg_get_expr(ib.indexprs, ib.indrelid), '') = coalesce(pg_get_expr(ia.indexprs, ia.indrelid), '')
     AND coalesce(pg_get_expr(ib.indpred, ib.indrelid), '') = coalesce(pg_get_expr(ia.indpred, ia.indrelid), '')
    JOIN pg_class AS a ON a.oid = ia.indexrelid
    JOIN pg_class AS b ON b.oid = ib.indexrelid
    WHERE a.relnamespace = quote_ident(current_schema())::REGNAMESPACE
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$1], '{}') FROM duplicates;
