-- Producers beyond Python (issue 15): who wrote an inbox row, and a feed of the rows the pipeline did
-- not enqueue itself (the app's transactional outbox writes them straight into D1), in commit order.
--
-- producer: NULL for the pipeline's own events (ingress webhooks, crons, follow-ups); the producer's
--   name for `POST /events` (e.g. desktop-sync) and for the app's outbox (`app` unless it says otherwise).
-- self_enqueued: 1 when the writer enqueues the event itself (the Python Publisher and the worker's
--   follow-ups do); 0, the default, for any other writer: the trigger below then records the row in
--   inbox_feed and a worker's feed poller enqueues it within a poll interval. The default is "not
--   enqueued", so a writer that knows nothing of this column (an older outbox, a hand-written INSERT)
--   is still picked up fast, and the worst a wrong 0 costs is one refused duplicate enqueue.
ALTER TABLE event_inbox ADD COLUMN producer TEXT;
ALTER TABLE event_inbox ADD COLUMN self_enqueued INTEGER NOT NULL DEFAULT 0 CHECK (self_enqueued IN (0, 1));

-- seq is assigned by the DATABASE when the row commits, not by the producer: a desktop event synced
-- days late carries a days-old UUIDv7 but gets the next seq. SQLite (and so D1) has one writer at a
-- time and a transaction holds the write lock from its first write to its commit, so seq order is
-- commit order: once a reader sees seq N, no row with a smaller seq can appear later (a rolled-back
-- batch takes its seq back with it, invisibly). AUTOINCREMENT, not a bare rowid: pruning old rows
-- must never let a seq be handed out twice (a bare rowid reuses max+1 after the max row is deleted).
CREATE TABLE inbox_feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,                -- event_inbox.id
    created_at INTEGER NOT NULL            -- ms, the inbox row's created_at (for pruning)
);

CREATE TRIGGER event_inbox_feed AFTER INSERT ON event_inbox
WHEN NEW.status = 'pending' AND NEW.self_enqueued = 0
BEGIN
    INSERT INTO inbox_feed (event_id, created_at) VALUES (NEW.id, NEW.created_at);
END;
