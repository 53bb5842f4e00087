-- Pipeline-owned: the ledger of gateway objects the payment handlers have recorded.
-- One row per (gateway, object, kind), written in the same batch as its `transactions` row: a second
-- recording of the same refund, capture or dispute outcome fails the primary key and the whole batch.
-- It also answers "which invoice is this payment for?" for events that do not name the invoice
-- (Stripe refunds and disputes carry no metadata).
CREATE TABLE gateway_objects (
    gateway TEXT NOT NULL CHECK (gateway IN ('razorpay', 'stripe')),
    object_id TEXT NOT NULL,                   -- pay_/pi_ (capture), attempt id (failure), rfnd_/re_, disp_/du_
    kind TEXT NOT NULL
        CHECK (kind IN ('capture', 'failure', 'refund', 'dispute_created', 'dispute_won', 'dispute_lost')),
    payment_id TEXT NOT NULL,                  -- the gateway payment the object belongs to
    invoice_id TEXT NOT NULL REFERENCES invoices(id),
    transaction_id TEXT REFERENCES transactions(id),  -- NULL for facts that move no money (dispute opened/won)
    amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    event_id TEXT NOT NULL,                    -- the inbox event that recorded it
    created_at INTEGER NOT NULL,               -- ms
    PRIMARY KEY (gateway, object_id, kind)
);
CREATE INDEX idx_gateway_objects_payment ON gateway_objects (gateway, payment_id);
CREATE INDEX idx_gateway_objects_invoice ON gateway_objects (invoice_id);

CREATE TRIGGER gateway_objects_no_update BEFORE UPDATE ON gateway_objects
BEGIN
    SELECT RAISE(ABORT, 'append_only: gateway_objects rows cannot be updated');
END;
CREATE TRIGGER gateway_objects_no_delete BEFORE DELETE ON gateway_objects
BEGIN
    SELECT RAISE(ABORT, 'append_only: gateway_objects rows cannot be deleted');
END;
