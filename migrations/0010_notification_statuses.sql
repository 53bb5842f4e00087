-- Pipeline-owned: what the providers reported about each send (status webhooks), and when each
-- notification became billable. The seed's `notifications` row is still written at send time; its
-- `cost` is what is chargeable so far (0 until the channel's billable moment), and the billing close
-- bills only rows whose charge is 'billable' (or rows written by anything else, with no charge row).

-- One row per send ('<notification_id>/<channel>', the notification_sends id), written by the status
-- handler. Every column is a monotone merge, so any order and any number of deliveries of the same
-- statuses give the same row:
--   progress     max over the statuses seen: 2 sent, 3 delivered, 4 read ('read' implies delivered)
--   *_at         the provider's time of the first such status (ms), for display only
--   failure_*    the earliest failure by (provider time, code): terminal unless delivered/read is seen
--   provider_free  a delivered/read status said the provider does not charge this message
--   fallback_at  when a late failure asked for the SMS fallback: set once, never twice
CREATE TABLE notification_deliveries (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    provider_message_id TEXT,
    progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 4),
    sent_at INTEGER,
    delivered_at INTEGER,
    read_at INTEGER,
    failed_at INTEGER,
    failure_code TEXT,
    failure_reason TEXT,
    provider_free INTEGER NOT NULL DEFAULT 0 CHECK (provider_free IN (0, 1)),
    fallback_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX idx_notification_deliveries_notification_id ON notification_deliveries (notification_id);

-- Status webhooks name a send by the provider's message id (wamid, MSG91 request id, Resend email id).
CREATE INDEX idx_notification_sends_channel_provider_message_id ON notification_sends (channel, provider_message_id);

-- One row per notification the pipeline sent: which send it is charged for and whether that send
-- reached its channel's billable moment (SV_BILLABLE_ON: accepted or delivered).
--   pending:  not billable yet (e.g. WhatsApp sent, not yet delivered); notifications.cost = 0
--   billable: billable since billable_at; notifications.cost = amount. Never changes again.
--   void:     the send failed before its billable moment; cost 0 (a later delivery can still bill it)
CREATE TABLE notification_charges (
    id TEXT PRIMARY KEY REFERENCES notifications(id),
    channel TEXT NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'billable', 'void')),
    amount REAL NOT NULL,                      -- the rate-card price of `channel`, rupees to 2 places
    billable_at INTEGER,                       -- ms; set with state 'billable', never before
    reason TEXT,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    CHECK ((state = 'billable') = (billable_at IS NOT NULL))
);

-- Conservation (Σ billed notification cost = Σ invoice notification lines) in the database itself:
-- a billed notification's cost never changes and it is never un-billed.
CREATE TRIGGER notifications_billed_cost_frozen BEFORE UPDATE OF cost, billed ON notifications
WHEN OLD.billed = 1 AND (NEW.billed IS NOT 1 OR NEW.cost IS NOT OLD.cost)
BEGIN
    SELECT RAISE(ABORT, 'append_only: a billed notification cannot change its cost or be unbilled');
END;
