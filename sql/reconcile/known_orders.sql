-- Which of these order ids exist (named by PaymentIntent metadata, outside the window).
SELECT id FROM orders WHERE id = ANY($1);
