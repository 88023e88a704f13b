-- SHARE UPDATE EXCLUSIVE: reads and writes go on while existing rows are checked.
ALTER TABLE order_items VALIDATE CONSTRAINT order_items_snapshot_check;
