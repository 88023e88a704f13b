-- The orders to reconcile and their payment: created in [$1, $2], or the one order $3 (bound
-- with the type of orders.id, text or uuid).
-- Refunds are summarised per payment (pending and succeeded count as refunded).
SELECT o.id::TEXT AS id, o.status::TEXT AS status, o.amount_total_cents::BIGINT AS amount_total_cents,
       o.currency, o.stripe_payment_intent_id, o.created_at,
       p.id::TEXT AS payment_id, p.status AS payment_status,
       p.stripe_payment_intent_id AS payment_intent_id, p.succeeded_at, p.last_error_code,
       coalesce(r.ids, '{}') AS refund_ids, coalesce(r.refunded, 0)::BIGINT AS refunded_cents
FROM orders AS o
LEFT JOIN payments AS p ON p.order_id = o.id
LEFT JOIN LATERAL (
    SELECT array_agg(stripe_refund_id ORDER BY stripe_refund_id) FILTER (WHERE stripe_refund_id IS NOT NULL) AS ids,
           sum(amount_cents) FILTER (WHERE status IN ('pending', 'succeeded')) AS refunded
    FROM refunds WHERE payment_id = p.id
) AS r ON TRUE
WHERE ($3 IS NULL AND o.created_at BETWEEN $1 AND $2)
   OR o.id = $3
ORDER BY o.id;
