-- Once, on the first backfill after step 029 made the order queue: the orders not totalled
-- yet (all of them on a database never backfilled). One read of orders; the application's
-- writes have been queued by step 029's triggers since, and are queued as this runs.
INSERT INTO paytool.backfill_order_queue (order_id)
SELECT o.id FROM orders AS o WHERE o.amount_total_cents = 0
ON CONFLICT (order_id) DO NOTHING;
INSERT INTO paytool.backfill_checkpoints (step, last_id, finished_at)
VALUES ('order_queue_seeded', '', now());
