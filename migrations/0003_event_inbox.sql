-- Pipeline-owned: the durable inbox every accepted event is written to before its producer is answered.
CREATE TABLE event_inbox (
    id TEXT PRIMARY KEY,                       -- evt_<uuidv7>, also arq's job id
    type TEXT NOT NULL,                        -- e.g. payment.captured
    schema_version INTEGER NOT NULL DEFAULT 1,
    org_id TEXT NOT NULL,
    branch_id TEXT,
    dedupe_key TEXT NOT NULL UNIQUE,           -- a second publish with this key is acknowledged, not enqueued
    payload_json TEXT NOT NULL,                -- the whole envelope, as published
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'applied', 'dead', 'ignored')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    occurred_at INTEGER NOT NULL,              -- ms since epoch, from the producer
    created_at INTEGER NOT NULL,               -- ms, when the inbox accepted it
    available_at INTEGER NOT NULL,             -- ms, not to be run before (quiet hours, deferrals)
    updated_at INTEGER NOT NULL,
    applied_at INTEGER,
    dead_at INTEGER,
    version INTEGER NOT NULL DEFAULT 1
);
-- The re-drive sweeper and the CLI read pending/dead rows oldest first.
CREATE INDEX idx_event_inbox_status_available_at ON event_inbox (status, available_at);
CREATE INDEX idx_event_inbox_org_id ON event_inbox (org_id);
