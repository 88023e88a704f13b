-- The swap: every statement is catalog-only, so ACCESS EXCLUSIVE on orders is held for
-- milliseconds. SET NOT NULL uses the validated CHECK of 020 instead of scanning the table.
-- Dropping the old column drops the old orders_status_idx; the index built in 021 takes its name.
-- The enum type order_status stays: the running application may still reference it.
-- (no scan: the validated CHECK orders_status_new_not_null proves it)
-- squawk-ignore adding-not-nullable-field
ALTER TABLE orders ALTER COLUMN status_new SET NOT NULL;
ALTER TABLE orders ALTER COLUMN status_new SET DEFAULT 'PENDING';
DROP TRIGGER orders_status_sync ON orders;
-- (ours, created by 017 for the sync)
-- squawk-ignore ban-drop-function
DROP FUNCTION orders_status_sync();
-- (the enum column, replaced by the synced shadow column of the same values)
-- squawk-ignore ban-drop-column
ALTER TABLE orders DROP COLUMN status;
-- (the shadow column takes the old name: clients see the same column name)
-- squawk-ignore renaming-column
ALTER TABLE orders RENAME COLUMN status_new TO status;
-- (the index takes the name of the one dropped with the old column)
-- squawk-ignore renaming-object
ALTER INDEX orders_status_new_idx RENAME TO orders_status_idx;
-- (ours, made redundant by SET NOT NULL above)
-- squawk-ignore ban-drop-constraint
ALTER TABLE orders DROP CONSTRAINT orders_status_new_not_null;
-- PostgreSQL 18 records NOT NULL as a constraint, named after the column it was set on
-- (status_new, and with a suffix since step 019's CHECK took that name): rename it to what
-- PostgreSQL names it on a fresh table, so schema-diff tools see no drift. Before 18 there is
-- no such constraint and nothing happens.
DO $$
DECLARE
    not_null_name name;
BEGIN
    SELECT c.conname INTO not_null_name
    FROM pg_constraint AS c
    JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    WHERE c.conrelid = 'orders'::regclass AND c.contype = 'n' AND a.attname = 'status';
    IF not_null_name IS NOT NULL AND not_null_name <> 'orders_status_not_null' THEN
        EXECUTE format('ALTER TABLE orders RENAME CONSTRAINT %I TO orders_status_not_null', not_null_name);
    END IF;
END
$$;
