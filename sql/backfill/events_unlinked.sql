-- Of these events, how many are stored without a payment (no PaymentIntent, or one no payment has).
SELECT count(*) FROM payment_events WHERE stripe_event_id = ANY($1::text[]) AND payment_id IS NULL
