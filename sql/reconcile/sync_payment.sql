-- Bring a payment row in line with its PaymentIntent: status, PaymentIntent id, succeeded_at
-- (kept if already set), last error. Never the amount.
WITH before AS (
    SELECT to_jsonb(p) AS row FROM payments AS p WHERE p.id = $1 FOR UPDATE
),
synced AS (
    UPDATE payments
    SET status = $3,
        stripe_payment_intent_id = $2,
        succeeded_at = CASE WHEN $3 = 'succeeded' THEN coalesce(succeeded_at, $4) ELSE succeeded_at END,
        last_error_code = $5,
        last_error_message = $6,
        updated_at = CURRENT_TIMESTAMP
    WHERE id = $1
    RETURNING to_jsonb(payments) AS row
)
SELECT (SELECT row FROM before), (SELECT row FROM synced);
