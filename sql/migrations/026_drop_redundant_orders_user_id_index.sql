-- Cleanup: orders_user_id_idx (user_id) is a prefix of orders_user_id_created_at_idx
-- (user_id, created_at DESC), built by 013, which serves the same lookups: every write to
-- orders pays for a second index that no query needs. Dropped without blocking writes.
-- (verify reports it as redundant until then, and `migrate down` builds it again)
DROP INDEX CONCURRENTLY IF EXISTS orders_user_id_idx;
