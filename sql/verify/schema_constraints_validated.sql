-- Constraints left NOT VALID (added without validation, or a VALIDATE that never ran):
-- PostgreSQL does not enforce them on existing rows. $1 = sample size.
WITH not_valid AS (
    SELECT conrelid::REGCLASS::TEXT || '.' || conname AS name
    FROM pg_constraint
    WHERE connamespace = quote_ident(current_schema())::REGNAMESPACE AND NOT convalidated
)
SELECT count(*), coalesce((array_agg(name ORDER BY name))[1:$1], '{}') FROM not_valid;
