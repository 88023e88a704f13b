ALTER TABLE orders
    ADD CONSTRAINT orders_status_new_not_null CHECK (status_new IS NOT NULL) NOT VALID;
