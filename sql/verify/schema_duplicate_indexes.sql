-- Redundant indexes: one that duplicates another of the same table exactly (same columns,
-- operator classes, expressions and predicate), `a = b`; or a plain btree index whose columns
-- lead another btree index of the table in the same order and operator classes, `a ⊂ b`:
-- every write pays for both, the longer one serves the shorter one's queries. A unique prefix
-- is not redundant (it enforces something). $1 = sample size.
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
),
prefixes AS (
    SELECT s.relname || ' ⊂ ' || l.relname AS name
    FROM pg_index AS ishort
    JOIN pg_index AS ilong
      ON ilong.indrelid = ishort.indrelid AND ilong.indexrelid <> ishort.indexrelid
     AND ilong.indkey::TEXT LIKE ishort.indkey::TEXT || ' %'
     AND ilong.indclass::TEXT LIKE ishort.indclass::TEXT || ' %'
     AND ilong.indoption::TEXT LIKE ishort.indoption::TEXT || ' %'
    JOIN pg_class AS s ON s.oid = ishort.indexrelid
    JOIN pg_class AS l ON l.oid = ilong.indexrelid
    WHERE s.relnamespace = quote_ident(current_schema())::REGNAMESPACE
      AND NOT ishort.indisunique
      AND ishort.indexprs IS NULL AND ishort.indpred IS NULL
      AND ilong.indexprs IS NULL AND ilong.indpred IS NULL AND ilong.indisvalid
      AND s.relam = (SELECT oid FROM pg_am WHERE amname = 'btree') AND l.relam = s.relam
),
redundant AS (
    SELECT name FROM duplicates UNION ALL SELECT name FROM prefixes
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$1], '{}') FROM redundant;
