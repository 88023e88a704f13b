-- The legacy objects of SPEC §2 that the application owns (its columns, primary and foreign
-- keys, indexes), compared with how Prisma writes them. Their id types, foreign-key actions
-- and indexes vary in the wild, so a difference is a note for the reader, never a failure.
-- $1 = expected 'kind definition' lines (column, constraint, index), $2 = sample size.
WITH expected AS (
    SELECT line,
           CASE split_part(line, ' ', 1)
               WHEN 'index' THEN substring(line FROM 'INDEX (\S+) ON ')
               ELSE split_part(line, ' ', 2)
           END AS name
    FROM unnest($1::TEXT[]) AS line
),
actual AS (
    SELECT c.relname || '.' || a.attname AS name,
           'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
           || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS line
    FROM pg_attribute AS a
    JOIN pg_class AS c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = quote_ident(current_schema())::REGNAMESPACE AND c.relkind IN ('r', 'p')
      AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT conrelid::REGCLASS::TEXT || '.' || conname,
           'constraint ' || conrelid::REGCLASS::TEXT || '.' || conname || ' '
           || regexp_replace(pg_get_constraintdef(oid), ' NOT VALID$', '')
    FROM pg_constraint
    WHERE connamespace = quote_ident(current_schema())::REGNAMESPACE
    UNION ALL
    SELECT c.relname,
           'index ' || replace(pg_get_indexdef(c.oid), ' ON ' || quote_ident(current_schema()) || '.', ' ON public.')
    FROM pg_class AS c
    WHERE c.relnamespace = quote_ident(current_schema())::REGNAMESPACE AND c.relkind = 'i'
),
different AS (
    SELECT e.name || ': ' || coalesce(substring(a.line FROM '^\S+ \S+ (.*)$'), 'missing')
           || ' (Prisma: ' || substring(e.line FROM '^\S+ \S+ (.*)$') || ')' AS note
    FROM expected AS e
    LEFT JOIN actual AS a ON a.name = e.name AND split_part(a.line, ' ', 1) = split_part(e.line, ' ', 1)
    WHERE a.line IS DISTINCT FROM e.line
)
SELECT count(*), coalesce((array_agg(note ORDER BY note))[1:$2], '{}') FROM different;
