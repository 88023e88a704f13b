-- What an operator does after the preflight names the dirty stock rows: a negative quantity
-- becomes 0 (the machine is counted again later), and a machine slot keeps one stocks row.
UPDATE stocks SET quantity = 0 WHERE quantity < 0;

DELETE FROM stocks AS s
USING stocks AS t
WHERE s.machine_id = t.machine_id AND s.slot_number = t.slot_number AND s.id > t.id;
