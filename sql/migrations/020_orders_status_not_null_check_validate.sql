ALTER TABLE orders VALIDATE CONSTRAINT orders_status_new_not_null;
