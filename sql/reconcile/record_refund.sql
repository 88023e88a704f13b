-- Record a refund made in Stripe (the dashboard, another tool) that the database lacks.
-- Idempotent through the unique stripe_refund_id.
WITH recorded AS (
    INSERT INTO refunds (payment_id, stripe_refund_id, amount_cents, currency, status, reason, created_at, updated_at)
    VALUES ($1, $2, $3::BIGINT::INTEGER, $4, $5, $6, $7, CURRENT_TIMESTAMP)
    ON CONFLICT (stripe_refund_id) DO NOTHING
    RETURNING to_jsonb(refunds) AS row
)
SELECT NULL::JSONB, (SELECT row FROM recorded);
