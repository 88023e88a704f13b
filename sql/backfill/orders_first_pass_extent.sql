-- The orders step's first pass (until one completes: the checkpoint `order_queue_seeded`, after
-- which the order queue holds every order still to settle): the orders not totalled yet, and
-- those at 0 for good, read from orders itself. How many, and the largest key.
SELECT (SELECT count(*) FROM orders WHERE amount_total_cents = 0),
       (SELECT id::TEXT FROM orders WHERE amount_total_cents = 0 ORDER BY id DESC LIMIT 1)
