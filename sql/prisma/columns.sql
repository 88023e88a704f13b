-- Every column of the given tables in the current schema, with its type as PostgreSQL prints
-- it: `paytool prisma schema` derives each field's @db attribute from it.
-- $1 = table names.
SELECT c.relname::TEXT AS table_name,
       a.attname::TEXT AS column_name,
       format_type(a.atttypid, a.atttypmod) AS column_type
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
WHERE c.relnamespace = quote_ident(current_schema())::REGNAMESPACE
  AND c.relname = ANY($1::TEXT[])
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum;
