CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS stocks_machine_id_slot_number_key
    ON stocks (machine_id, slot_number);
