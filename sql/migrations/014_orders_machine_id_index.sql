-- Foreign keys without an index make every DELETE on the parent scan this table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_machine_id_idx ON orders (machine_id);
