-- One page of Stripe events into payment_events, idempotent on stripe_event_id: an event
-- already stored keeps its row (a webhook handler may have stored it first), except that one
-- stored before its payment existed gets linked now. Each event is linked to its payment through
-- the PaymentIntent id: the payment's own, else its order's.
-- $1 event ids, $2 types, $3 payloads (JSON text, as Stripe sent them), $4 created, $5 PaymentIntent ids.
WITH page AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamp[], $5::text[])
        AS p (event_id, type, payload, created, payment_intent_id)
),
stored AS (
    INSERT INTO payment_events (stripe_event_id, type, payload, stripe_created_at, payment_id)
    SELECT p.event_id, p.type, p.payload::jsonb, p.created, linked.id
    FROM page AS p
    LEFT JOIN LATERAL (
        SELECT pay.id FROM payments AS pay WHERE pay.stripe_payment_intent_id = p.payment_intent_id
        UNION ALL
        SELECT pay.id FROM orders AS o JOIN payments AS pay ON pay.order_id = o.id
        WHERE o.stripe_payment_intent_id = p.payment_intent_id
        LIMIT 1
    ) AS linked ON true
    ON CONFLICT (stripe_event_id) DO UPDATE SET payment_id = excluded.payment_id
    WHERE payment_events.payment_id IS NULL AND excluded.payment_id IS NOT NULL
    RETURNING xmax = 0 AS inserted
)
SELECT
    count(*) FILTER (WHERE inserted) AS inserted,
    count(*) FILTER (WHERE NOT inserted) AS linked_now
FROM stored
