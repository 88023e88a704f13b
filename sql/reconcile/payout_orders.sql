-- The orders behind a payout's PaymentIntents ($1: their ids), through the order's own link
-- and its payment row's (they may differ: both are looked up).
SELECT links.payment_intent_id, o.id::TEXT AS order_id, o.status::TEXT AS status,
       o.amount_total_cents::BIGINT AS amount_total_cents, o.currency
FROM (
    SELECT stripe_payment_intent_id AS payment_intent_id, id AS order_id
    FROM orders WHERE stripe_payment_intent_id = ANY($1)
    UNION
    SELECT stripe_payment_intent_id, order_id
    FROM payments WHERE stripe_payment_intent_id = ANY($1)
) AS links
JOIN orders AS o ON o.id = links.order_id
