-- In the Prisma baseline only, for a new (empty) database: the batched copy of step 018 in one
-- statement, since nothing else runs there.
UPDATE orders SET status_new = status::TEXT WHERE status_new IS NULL;
