CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_status_new_idx ON orders (status_new);
