-- What a run's orders step would read before its first pass has completed (for --dry-run):
-- the orders at 0 (its first pass), then the order queue's pending rows that pass does not
-- settle (orders the application totalled, or deleted, since migrate queued them).
SELECT (SELECT count(*) FROM orders WHERE amount_total_cents = 0)
     + (SELECT count(*) FROM paytool.backfill_order_queue AS q
        WHERE q.state = 'pending'
          AND NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.id = q.order_id AND o.amount_total_cents = 0))
