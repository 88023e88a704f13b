-- The orders to reconcile and their payment: created in [$1, $2], or the one order $3 (bound
-- with the type of orders.id, text or uuid).
-- Refunds are summarised per payment (pending and succeeded count as refunded).
SELECT o.id::TEXT, o.status::TEXT, o.amount_total_cents::BIGINT, o.currency, o.stripe_payment_intent_id, o.paid_at,
       p.id, p.status, p.amount_cents::BIGINT, p.stripe_payment_intent_id, p.succeeded_at, p.last_error_code,
       coalesce(r.ids, '{}'), coalesce(r.refunded, 0)::BIGINT, o.created_at
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
