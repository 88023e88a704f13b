-- What `prisma migrate resolve --applied NAME` writes: the migration as finished now, with the
-- sha256 of its migration.sql and no steps run. $1 = migration name, $2 = checksum.
INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
SELECT gen_random_uuid()::TEXT, $2, now(), $1, now(), 0
WHERE NOT EXISTS (
    SELECT 1 FROM "_prisma_migrations" WHERE migration_name = $1 AND rolled_back_at IS NULL
);
