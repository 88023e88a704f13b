-- Attaching a valid unique index is a catalog-only change.
ALTER TABLE stocks
    ADD CONSTRAINT stocks_machine_id_slot_number_key
    UNIQUE USING INDEX stocks_machine_id_slot_number_key;
