-- paytool.backfill_workers as an earlier paytool made it has no pid column: added once, by
-- the table's owner (the role that ran the first backfill). Nullable: no rewrite, no scan.
ALTER TABLE paytool.backfill_workers ADD COLUMN IF NOT EXISTS pid INTEGER;
