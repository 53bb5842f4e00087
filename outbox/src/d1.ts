import type { DrizzleD1Database } from "drizzle-orm/d1";
import type { SQLiteInsertBase } from "drizzle-orm/sqlite-core";

import type { InboxRow } from "./inbox.js";
import { eventInbox } from "./table.js";

const COLUMNS = [
  "id",
  "type",
  "schema_version",
  "org_id",
  "branch_id",
  "dedupe_key",
  "payload_json",
  "status",
  "attempts",
  "last_error",
  "occurred_at",
  "created_at",
  "available_at",
  "updated_at",
  "applied_at",
  "dead_at",
  "version",
  "producer",
  "self_enqueued",
] as const satisfies readonly (keyof InboxRow)[];

/**
 * `INSERT ... ON CONFLICT(dedupe_key) DO NOTHING`: a second event with the same dedupe key changes
 * nothing (`meta.changes` is 0) and does not fail the batch. (A new event's `meta.changes` is 2 on D1,
 * which counts the feed row its trigger writes: test `> 0`, not `=== 1`.) An event id reused under ANOTHER dedupe
 * key is a producer bug and fails the batch (UNIQUE constraint failed: event_inbox.id).
 */
export const INSERT_SQL =
  `INSERT INTO event_inbox (${COLUMNS.join(", ")}) VALUES (${COLUMNS.map((_, i) => `?${i + 1}`).join(", ")})` +
  " ON CONFLICT (dedupe_key) DO NOTHING";

/** What `drizzleInsert` returns: a Drizzle INSERT on D1, a valid `db.batch([...])` item. */
export type EventInboxInsert = SQLiteInsertBase<typeof eventInbox, "async", D1Result>;

// InboxRow must stay exactly the Drizzle table's row (and so the migration's columns): a compile error here
// means one of them changed without the other.
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const rowMatchesTable: Same<InboxRow, typeof eventInbox.$inferSelect> = true;
void rowMatchesTable;

/** The row's values in `INSERT_SQL`'s order. */
export function insertParams(row: InboxRow): (string | number | null)[] {
  return COLUMNS.map((column) => row[column]);
}

/**
 * The prepared INSERT for `row`, to put in the same `env.DB.batch([...])` as the change it describes:
 *
 *     await env.DB.batch([env.DB.prepare("INSERT INTO projects ...").bind(...), insertStatement(env.DB, row)]);
 */
export function insertStatement(db: D1Database, row: InboxRow): D1PreparedStatement {
  return db.prepare(INSERT_SQL).bind(...insertParams(row));
}

/**
 * The Drizzle INSERT for `row` (same SQL semantics as `insertStatement`), for `db.batch([...])`:
 *
 *     await db.batch([db.insert(projects).values(project), drizzleInsert(db, row)]);
 */
export function drizzleInsert<TSchema extends Record<string, unknown>>(
  db: DrizzleD1Database<TSchema>,
  row: InboxRow,
): EventInboxInsert {
  return db.insert(eventInbox).values(row).onConflictDoNothing({ target: eventInbox.dedupe_key });
}
