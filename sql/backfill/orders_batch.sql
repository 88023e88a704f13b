-- One batch of the orders step, over the key range ($1, $2] of the order queue's pending rows
-- (paytool.backfill_order_queue), or with $3 (its first pass, until one completes) of the orders
-- at 0 themselves, each with its queue row if it has one: amount_total_cents = the sum of the
-- item subtotals, for orders whose items are all snapshotted and not totalled yet, and the
-- payment of every order whose total is final (just totalled, totalled already, or 0 without
-- any item) and that has none, in this same transaction: each order is read once, and its
-- payment is written from the row the UPDATE just wrote. The payments step's queue only holds
-- what an earlier paytool totalled without a payment (payment_queue_seed.sql).
-- A payment still waiting to be paid whose amount is not its order's final total takes that
-- total, as step 029's trigger would: one the application made for an order not totalled yet,
-- or one an application's edit left behind when it landed while a batch wrote that payment
-- (the trigger's snapshot, taken before the batch committed, did not see it; the edit queued
-- the order again, so the next run puts it right). Only if the payment still has the amount
-- this batch read: one changed meanwhile is the application's to keep.
-- The queued order leaves the queue; one that cannot be totalled stays there (the first pass
-- queues it) with the reason as its state (`items_without_snapshot` or
-- `total_overflows_integer`: orders_unresolved.sql reports it from the queue alone) until its
-- items change. A queue row changed meanwhile by the application (a newer queued_at, or a row
-- the first pass did not see) is left as it is, pending: its order changed after this batch
-- read it.
-- The items are summed per order through LATERAL, i.e. by order_items_order_id_idx: as a
-- plain join the planner switched to hashing all of order_items once a batch passed ~6,000
-- orders. Returns the orders totalled and the payments written.
-- Each order is read once: the queue's rows with their order (gone, if the application deleted
-- it), or the first pass's orders with their queue row.
-- In a first pass most key ranges hold no queue row and no payment: the per-order lookups of
-- the queue and of payments run only if that table has a row in the batch's key range (one
-- probe for the batch, then a one-time filter), and the queue's DELETE probes only the orders
-- that had a queue row (4% of the orders step at 1M orders). Each lookup is a LATERAL subquery
-- kept whole by OFFSET 0, the gate inside it: as a plain subquery joined on the order id,
-- PostgreSQL 16-18 pulled it up and applied the gate as a join filter after the lookup.
WITH queued AS (
    SELECT q.order_id, q.queued_at, o.id IS NOT NULL AS found, o.amount_total_cents AS current,
           o.stripe_payment_intent_id, o.currency, o.status, o.paid_at, o.created_at, o.updated_at
    FROM paytool.backfill_order_queue AS q
    LEFT JOIN orders AS o ON o.id = q.order_id
    WHERE NOT $3 AND ($1 IS NULL OR q.order_id > $1) AND q.order_id <= $2 AND q.state = 'pending'
    UNION ALL
    SELECT o.id, q.queued_at, true, o.amount_total_cents,
           o.stripe_payment_intent_id, o.currency, o.status, o.paid_at, o.created_at, o.updated_at
    FROM orders AS o
    LEFT JOIN LATERAL (
        SELECT q.queued_at FROM paytool.backfill_order_queue AS q
        WHERE q.order_id = o.id
          AND (SELECT EXISTS (SELECT FROM paytool.backfill_order_queue AS r
                              WHERE ($1 IS NULL OR r.order_id > $1) AND r.order_id <= $2))
        OFFSET 0) AS q ON true
    WHERE $3 AND ($1 IS NULL OR o.id > $1) AND o.id <= $2 AND o.amount_total_cents = 0
),
totals AS (
    SELECT queued.order_id AS id, queued.queued_at, queued.found, queued.current,
           queued.stripe_payment_intent_id, queued.currency, queued.status, queued.paid_at,
           queued.created_at, queued.updated_at,
           coalesce(items.total, 0) AS total, items.complete,
           items.complete AND coalesce(items.total, 0) <= 2147483647 AS final,
           p.id IS NOT NULL AS has_payment, p.status AS payment_status, p.amount_cents AS payment_amount
    FROM queued
    LEFT JOIN LATERAL (
        SELECT p.id, p.status, p.amount_cents FROM payments AS p
        WHERE p.order_id = queued.order_id
          AND (SELECT EXISTS (SELECT FROM payments AS r
                              WHERE ($1 IS NULL OR r.order_id > $1) AND r.order_id <= $2))
        OFFSET 0) AS p ON true
    CROSS JOIN LATERAL (
        SELECT sum(i.subtotal_cents::BIGINT) AS total,
               coalesce(bool_and(i.label IS NOT NULL), true) AS complete
        FROM order_items AS i
        WHERE i.order_id = queued.order_id
    ) AS items
),
totalled AS (
    UPDATE orders AS o
    SET amount_total_cents = totals.total::INTEGER
    FROM totals
    WHERE o.id = totals.id
      AND o.amount_total_cents = 0 AND totals.final AND totals.total >= 1
    RETURNING o.id, o.stripe_payment_intent_id, o.amount_total_cents, o.currency, o.status,
              o.paid_at, o.created_at, o.updated_at, totals.has_payment
),
final_orders AS (
    SELECT id, stripe_payment_intent_id, amount_total_cents, currency, status, paid_at,
           created_at, updated_at
    FROM totalled
    WHERE NOT has_payment
    UNION ALL
    SELECT id, stripe_payment_intent_id, current, currency, status, paid_at, created_at, updated_at
    FROM totals
    WHERE found AND final AND NOT has_payment AND current = total
),
paid AS (
    INSERT INTO payments (order_id, stripe_payment_intent_id, amount_cents, currency, status,
                          succeeded_at, created_at, updated_at)
    SELECT f.id, f.stripe_payment_intent_id, f.amount_total_cents, f.currency,
           CASE f.status
               WHEN 'PAID' THEN 'succeeded'
               WHEN 'REFUNDED' THEN 'succeeded'
               WHEN 'CANCELLED' THEN 'canceled'
               ELSE 'requires_payment_method'
           END,
           CASE WHEN f.status IN ('PAID', 'REFUNDED') THEN f.paid_at END,
           f.created_at, f.updated_at
    FROM final_orders AS f
    ON CONFLICT (order_id) DO NOTHING
    RETURNING 1
),
amount_followed AS (
    UPDATE payments AS p
    SET amount_cents = totals.total::INTEGER, updated_at = now()
    FROM totals
    WHERE p.order_id = totals.id
      AND totals.has_payment AND totals.final
      AND (totals.current = totals.total OR (totals.current = 0 AND totals.total >= 1))
      AND totals.status NOT IN ('PAID', 'REFUNDED')
      AND totals.payment_status IN ('requires_payment_method', 'requires_confirmation', 'requires_action')
      AND totals.payment_amount <> totals.total
      AND p.amount_cents = totals.payment_amount
      AND p.status IN ('requires_payment_method', 'requires_confirmation', 'requires_action')
    RETURNING 1
),
settled AS (
    DELETE FROM paytool.backfill_order_queue AS q
    USING totals
    WHERE q.order_id = totals.id AND q.queued_at = totals.queued_at
      AND (NOT totals.found OR totals.final)
      AND totals.queued_at IS NOT NULL
    RETURNING 1
),
unresolved AS (
    INSERT INTO paytool.backfill_order_queue AS q (order_id, state, queued_at)
    SELECT totals.id,
           CASE WHEN totals.complete THEN 'total_overflows_integer' ELSE 'items_without_snapshot' END,
           coalesce(totals.queued_at, clock_timestamp())
    FROM totals
    WHERE totals.found AND NOT totals.final
    ON CONFLICT (order_id) DO UPDATE SET state = excluded.state
    WHERE q.queued_at = excluded.queued_at
    RETURNING 1
)
SELECT (SELECT count(*) FROM totalled) AS changed, (SELECT count(*) FROM paid) AS payments;
