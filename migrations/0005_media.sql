-- Pipeline-owned: the last R2 notification applied for each object key (media uploads).
-- R2 delivers object-create/-delete notifications at least once and out of order; this row is what
-- makes duplicates and reordering converge. An incoming notification is applied only when its stamp
-- (event_time, then delete-after-create, then eTag) is newer than the stored one; a delete that
-- arrives before its create leaves a 'deleted' tombstone here so the late create is recognised as stale.
CREATE TABLE media_keys (
    path TEXT PRIMARY KEY,                     -- the R2 object key (= media_objects.path)
    media_id TEXT,                             -- med_<uuidv7> of the media_objects row while present
    org_id TEXT NOT NULL,
    branch_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('present', 'deleted')),
    event_time INTEGER NOT NULL,               -- ms since epoch: R2 eventTime of the deciding notification
    etag TEXT NOT NULL DEFAULT '',             -- R2 eTag of the present object ('' for a tombstone)
    updated_at INTEGER NOT NULL,               -- ms, when the pipeline applied it
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX idx_media_keys_project_id ON media_keys (project_id);
