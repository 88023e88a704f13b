-- PAID orders whose money should have reached the bank: paid in [$1, $2] (the window, up to
-- --not-paid-out-after before its end), with a PaymentIntent that no itemized payout of the
-- window paid out ($3). Few, normally: each is then looked up in Stripe. `paid_orders`
-- counts every PAID order of that span, to choose between those lookups and one listing.
WITH paid AS (
    SELECT coalesce(p.stripe_payment_intent_id, o.stripe_payment_intent_id) AS payment_intent_id
    FROM orders AS o
    LEFT JOIN payments AS p ON p.order_id = o.id
    WHERE o.status::TEXT = 'PAID' AND o.paid_at >= $1 AND o.paid_at <= $2
)
SELECT (SELECT count(*) FROM paid) AS paid_orders,
       -- A set difference (hashed, or sorted past work_mem): O(n log n) at any size, where
       -- `<> ALL($3)` and an anti-join on unnest() (estimated at 10 rows: a nested loop) compare
       -- every order with every paid-out PaymentIntent.
       ARRAY(SELECT payment_intent_id FROM paid WHERE payment_intent_id IS NOT NULL
             EXCEPT
             SELECT unnest($3::TEXT[])
             ORDER BY 1) AS candidates
