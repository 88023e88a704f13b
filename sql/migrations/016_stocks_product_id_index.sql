CREATE INDEX CONCURRENTLY IF NOT EXISTS stocks_product_id_idx ON stocks (product_id);
