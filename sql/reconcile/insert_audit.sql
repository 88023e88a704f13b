-- One audit row, in the transaction of the repair it describes.
INSERT INTO paytool.reconcile_audit (run_id, finding, action, order_id, payment_intent_id, before, after)
VALUES ($1, $2, $3, $4, $5, $6, $7);
