-- Catalog-only change (nullable column, no default): ACCESS EXCLUSIVE on users for milliseconds.
ALTER TABLE users ADD COLUMN IF NOT EXISTS stripe_customer_id VARCHAR;
