ALTER TABLE stocks
    ADD CONSTRAINT stocks_quantity_non_negative CHECK (quantity >= 0) NOT VALID;
