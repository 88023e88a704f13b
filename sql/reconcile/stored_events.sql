-- Which of these Stripe events payment_events already has.
SELECT stripe_event_id FROM payment_events WHERE stripe_event_id = ANY($1::TEXT [])
