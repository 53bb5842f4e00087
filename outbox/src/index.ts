/**
 * @studiovault/outbox: publish StudioVault pipeline events from the app as a transactional outbox.
 *
 * The event's `event_inbox` row is inserted in the SAME D1 batch as the app's own writes, so the event
 * exists if and only if the change committed; the Python pipeline picks pending rows up and applies them.
 */
export {
  EventValidationError,
  type FieldIssue,
  NotPublishableError,
  OutboxError,
  UnknownEventTypeError,
} from "./errors.js";
export { type IdPrefix, isId, newEventId, newId } from "./ids.js";
export {
  type BuildOptions,
  buildInboxRow,
  type Envelope,
  type InboxRow,
  type Instant,
  notificationDedupeKey,
  type OutboxEvent,
  PUBLISHABLE_EVENT_TYPES,
  type PublishableEventType,
} from "./inbox.js";
export { drizzleInsert, type EventInboxInsert, INSERT_SQL, insertParams, insertStatement } from "./d1.js";
export { eventInbox, INBOX_STATUSES, type InboxStatus } from "./table.js";
export { ENVELOPE_SCHEMA, PAYLOAD_SCHEMAS, SCHEMA_INDEX } from "./generated/schemas.js";
