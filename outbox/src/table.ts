import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** The inbox statuses (migrations/0003_event_inbox.sql's CHECK). The app only ever writes `pending`. */
export const INBOX_STATUSES = ["pending", "applied", "dead", "ignored"] as const;
export type InboxStatus = (typeof INBOX_STATUSES)[number];

/**
 * `event_inbox`, exactly as migrations/0003_event_inbox.sql creates it and 0008_producers.sql extends it. The pipeline owns the table and
 * its migrations; this definition is for inserting (and reading) rows with Drizzle. Property names are
 * the column names, so an `InboxRow` from `buildInboxRow` is a row of this table as it is.
 * Times are INTEGER milliseconds since the epoch.
 */
export const eventInbox = sqliteTable(
  "event_inbox",
  {
    id: text("id").primaryKey(),
    type: text("type").notNull(),
    schema_version: integer("schema_version").notNull().default(1),
    org_id: text("org_id").notNull(),
    branch_id: text("branch_id"),
    dedupe_key: text("dedupe_key").notNull().unique(),
    payload_json: text("payload_json").notNull(),
    status: text("status", { enum: INBOX_STATUSES }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    last_error: text("last_error"),
    occurred_at: integer("occurred_at").notNull(),
    created_at: integer("created_at").notNull(),
    available_at: integer("available_at").notNull(),
    updated_at: integer("updated_at").notNull(),
    applied_at: integer("applied_at"),
    dead_at: integer("dead_at"),
    version: integer("version").notNull().default(1),
    // migrations/0008_producers.sql: who wrote the row, and whether the writer enqueues it itself (the
    // app does not: 0 makes the feed trigger hand it to the pipeline's poller).
    producer: text("producer"),
    self_enqueued: integer("self_enqueued").notNull().default(0),
  },
  (t) => [
    index("idx_event_inbox_status_available_at").on(t.status, t.available_at),
    index("idx_event_inbox_org_id").on(t.org_id),
  ],
);
