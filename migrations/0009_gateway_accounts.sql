-- Pipeline-owned: each org's own gateway accounts (issue 16), and a ledger scoped to the account that
-- signed each fact.

-- One row per connected gateway account: a studio's Razorpay account (acc_...) or Stripe Connect account
-- (acct_...), or StudioVault's own platform account (role 'platform', no org: it is paid the overage
-- invoices). `credentials` is a Fernet token (SV_ACCOUNTS_ENCRYPTION_KEYS) of a JSON object holding the
-- webhook secrets (a list: rotation) and API credentials; nothing secret is stored in clear.
-- `endpoint_key` is the opaque, random path segment of the account's webhook URL
-- (POST /webhooks/razorpay/{endpoint_key}). A disconnected row keeps its history and loses its secrets.
CREATE TABLE gateway_accounts (
    id TEXT PRIMARY KEY,                       -- gwa_<uuidv7>
    gateway TEXT NOT NULL CHECK (gateway IN ('razorpay', 'stripe')),
    role TEXT NOT NULL CHECK (role IN ('studio', 'platform')),
    org_id TEXT REFERENCES organizations(id),  -- NULL only for the platform's account
    account_ref TEXT NOT NULL CHECK (length(account_ref) BETWEEN 3 AND 80),  -- the gateway's id: acc_... / acct_...
    endpoint_key TEXT NOT NULL UNIQUE,
    credentials TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disconnected')),
    reconciled_until INTEGER,                  -- checkpoint, unix seconds: every gateway object created
                                               -- before it has been reconciled; NULL: never
    created_at INTEGER NOT NULL,               -- ms
    updated_at INTEGER NOT NULL,               -- ms
    version INTEGER NOT NULL DEFAULT 1,
    CHECK ((role = 'platform') = (org_id IS NULL))
);
-- One active row per gateway account, and one active platform account per gateway.
CREATE UNIQUE INDEX ux_gateway_accounts_active_ref ON gateway_accounts (gateway, account_ref)
    WHERE status = 'active';
CREATE UNIQUE INDEX ux_gateway_accounts_platform ON gateway_accounts (gateway)
    WHERE role = 'platform' AND status = 'active';
CREATE INDEX idx_gateway_accounts_org ON gateway_accounts (org_id);

-- The ledger of recorded gateway objects, rebuilt (SQLite cannot change a CHECK in place) to
-- (a) name the gateway account that signed each fact: a studio who signs a fact naming another studio's
--     payment id records it under its own account, never squatting the other's row;
-- (b) accept 'refund_reversed': a refund that failed or was cancelled after it succeeded.
-- Rows recorded before accounts existed keep account_id '' and match any account.
CREATE TABLE gateway_objects_v2 (
    gateway TEXT NOT NULL CHECK (gateway IN ('razorpay', 'stripe')),
    account_id TEXT NOT NULL DEFAULT '',       -- the gateway account (acc_/acct_) that signed it; '' before 0009
    object_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('capture', 'failure', 'refund', 'refund_reversed', 'dispute_created',
                                       'dispute_won', 'dispute_lost')),
    payment_id TEXT NOT NULL,
    invoice_id TEXT NOT NULL REFERENCES invoices(id),
    transaction_id TEXT REFERENCES transactions(id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (gateway, account_id, object_id, kind)
);
INSERT INTO gateway_objects_v2 (gateway, account_id, object_id, kind, payment_id, invoice_id, transaction_id,
                                amount_minor, currency, event_id, created_at)
    SELECT gateway, '', object_id, kind, payment_id, invoice_id, transaction_id, amount_minor, currency, event_id,
           created_at FROM gateway_objects;
DROP TABLE gateway_objects;
ALTER TABLE gateway_objects_v2 RENAME TO gateway_objects;
CREATE INDEX idx_gateway_objects_object ON gateway_objects (gateway, object_id);
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
