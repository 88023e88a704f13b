-- Store an event whose webhook Stripe could not deliver, as the webhook handler would have:
-- idempotent through the unique stripe_event_id, linked to its payment by PaymentIntent id.
-- The audit keeps the row without its payload (the payload is in the row itself).
WITH recorded AS (
    INSERT INTO payment_events (stripe_event_id, type, payload, stripe_created_at, payment_id)
    SELECT $1, $2, $3::JSONB, $4, (
        SELECT pay.id FROM payments AS pay WHERE pay.stripe_payment_intent_id = $5
        UNION ALL
        SELECT pay.id FROM orders AS o JOIN payments AS pay ON pay.order_id = o.id
        WHERE o.stripe_payment_intent_id = $5
        LIMIT 1
    )
    ON CONFLICT (stripe_event_id) DO NOTHING
    RETURNING to_jsonb(payment_events) - 'payload' AS row
)
SELECT NULL::JSONB, (SELECT row FROM recorded);
