-- Pipeline-owned: one row per (notification, channel) send attempt (notification dispatch).
-- The handler commits a 'sending' claim in its own small batch BEFORE calling the provider; the unit of
-- work's batch (with the `notifications` row and the inbox update) then records 'sent'. A retry that
-- finds 'sent' or 'unknown' never sends again; one that finds 'sending' (a crash between the request and
-- the unit's batch) re-sends only where the provider takes an idempotency key (e-mail, same key), and
-- otherwise records the send as 'unknown' (probably sent) without a second request.
--   sending: claimed, request in flight (or the worker died in the window)
--   sent:    accepted by the provider, recorded with the notifications row
--   unknown: found 'sending' on a retry for a provider without idempotency keys; not re-sent
--   retry:   the provider answered "not now" (429, 5xx, timeout): free to send again
--   failed:  the provider refused it permanently (invalid recipient, template): fall back or dead-letter
CREATE TABLE notification_sends (
    id TEXT PRIMARY KEY,                       -- '<notification_id>/<channel>', also the idempotency key
    notification_id TEXT NOT NULL,             -- ntf_<uuidv7>: the notifications row the send is recorded as
    channel TEXT NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    event_id TEXT NOT NULL,                    -- the notification.due event that last claimed it
    org_id TEXT NOT NULL,
    branch_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'unknown', 'retry', 'failed')),
    provider_message_id TEXT,                  -- wamid / MSG91 request id / e-mail id
    last_error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,       -- requests made (claims taken)
    created_at INTEGER NOT NULL,               -- ms since epoch
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX idx_notification_sends_notification_id ON notification_sends (notification_id);
CREATE INDEX idx_notification_sends_branch_id_status ON notification_sends (branch_id, status);
