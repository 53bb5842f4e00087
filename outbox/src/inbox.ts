import { EventValidationError, type FieldIssue, NotPublishableError, UnknownEventTypeError } from "./errors.js";
import { SCHEMA_INDEX } from "./generated/schemas.js";
import * as validators from "./generated/validators.js";
import { isId, newEventId } from "./ids.js";
import type { InboxStatus } from "./table.js";

/** The event types an app, desktop sync or relay may publish (schemas/index.json `external_producers`). */
export type PublishableEventType = (typeof SCHEMA_INDEX.externalProducers)[number];
export const PUBLISHABLE_EVENT_TYPES: readonly PublishableEventType[] = SCHEMA_INDEX.externalProducers;

/** A point in time: a `Date`, integer milliseconds since the epoch, or an ISO-8601 string with an offset. */
export type Instant = Date | number | string;

/** A pipeline event as the app publishes it. `payload` is validated against the type's JSON Schema. */
export interface OutboxEvent {
  /** e.g. `notification.due`; only `PUBLISHABLE_EVENT_TYPES`. */
  type: PublishableEventType;
  /** The payload schema version; omitted: the type's only version. */
  schemaVersion?: number;
  /** `org_<uuidv7>`: the tenant. */
  orgId: string;
  /** `brn_<uuidv7>`: required by every branch-scoped event (all the publishable ones are). */
  branchId?: string | null;
  /** The producer's key for the fact: the same fact, the same key (a second insert is a no-op). 1-255 chars. */
  dedupeKey: string;
  /** The event's fields (snake_case, as in the schema). Dates may be `Date`s; they become ISO strings. */
  payload: Record<string, unknown>;
  /** When it happened (default: now). A desktop that syncs days later passes the original time. */
  occurredAt?: Instant;
  /** Not to be applied before this time (quiet hours, scheduled sends); default: as soon as possible. */
  availableAt?: Instant | null;
}

export interface BuildOptions {
  /** The event's id, `evt_<uuidv7>`, when the producer made it already (e.g. offline, on a desktop):
   * accepted as given, however old. Default: a fresh `newEventId()`. */
  eventId?: string;
  /** The inbox's "now" (created_at, updated_at, and available_at when no availableAt). Default: now. */
  now?: Date | number;
  /** Who publishes (the row's `producer` column, for operators and logs). Default: `"app"`. */
  producer?: string;
}

/** The Envelope the Python pipeline reads back from `payload_json` (events/envelope.py, extra="forbid"). */
export interface Envelope {
  event_id: string;
  type: string;
  schema_version: number;
  occurred_at: string;
  org_id: string;
  branch_id: string | null;
  dedupe_key: string;
  payload: Record<string, unknown>;
  available_at: string | null;
}

/** One `event_inbox` row: exactly the table's columns (migrations/0003_event_inbox.sql); times in ms. */
export interface InboxRow {
  id: string;
  type: string;
  schema_version: number;
  org_id: string;
  branch_id: string | null;
  dedupe_key: string;
  payload_json: string;
  status: InboxStatus;
  attempts: number;
  last_error: string | null;
  occurred_at: number;
  created_at: number;
  available_at: number;
  updated_at: number;
  applied_at: number | null;
  dead_at: number | null;
  version: number;
  /** The producer's name (migration 0008). */
  producer: string | null;
  /** Always 0 from the outbox: the pipeline's feed poller enqueues the event (migration 0008's trigger). */
  self_enqueued: number;
}

// ---- validation --------------------------------------------------------------------------------------

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}
interface Validator {
  (data: unknown): boolean;
  errors?: AjvError[] | null;
}

const VALIDATORS = validators as unknown as Record<string, Validator>;
const PAYLOAD_VALIDATORS: Readonly<Record<string, string>> = validators.PAYLOAD_VALIDATORS;
const ID_PREFIX_BY_PATTERN = new Map<string, string>(
  Object.entries(SCHEMA_INDEX.idPatterns).map(([prefix, pattern]) => [pattern, prefix]),
);
// 9999-12-31T23:59:59.999Z: the last instant both JavaScript and Python write as a 4-digit year.
const MAX_MS = 253_402_300_799_999;
const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** A producer's name, as the ingress's SV_PRODUCER_SECRETS names them. */
const PRODUCER_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

const DATETIME_MESSAGE = "must be an ISO-8601 date-time with a UTC offset, e.g. 2026-05-01T10:00:00+05:30";

function fieldOf(base: string, instancePath: string, child?: unknown): string {
  const parts = instancePath
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (typeof child === "string") parts.push(child);
  return [base, ...parts].filter(Boolean).join(".");
}

function describe(error: AjvError, value: unknown): string {
  switch (error.keyword) {
    case "required":
      return "is required";
    case "additionalProperties":
      return "is not a field of this event";
    case "pattern": {
      if (error.params.pattern === SCHEMA_INDEX.awareDatetimePattern) return DATETIME_MESSAGE;
      const prefix = ID_PREFIX_BY_PATTERN.get(String(error.params.pattern));
      const got = typeof value === "string" ? ` (got ${JSON.stringify(value.slice(0, 80))})` : "";
      return prefix ? `must be an ID of the form ${prefix}_<uuidv7>${got}` : `must match ${String(error.params.pattern)}${got}`;
    }
    case "enum":
      return `must be one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`;
    case "format":
      return error.params.format === "date-time" ? DATETIME_MESSAGE : `must be a ${String(error.params.format)}`;
    default:
      return error.message ?? `fails ${error.keyword}`;
  }
}

function valueAt(root: unknown, instancePath: string): unknown {
  let value = root;
  for (const part of instancePath.split("/").slice(1)) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return value;
}

/** Ajv's errors as one issue per field: the alternatives of an `anyOf` (e.g. "or null") are noise. */
function issuesOf(errors: readonly AjvError[], base: string, data: unknown): FieldIssue[] {
  const byField = new Map<string, FieldIssue>();
  const rank = (keyword: string) => (keyword === "anyOf" || keyword === "oneOf" ? 2 : keyword === "type" ? 1 : 0);
  for (const error of errors) {
    const child = error.params.missingProperty ?? error.params.additionalProperty;
    const field = fieldOf(base, error.instancePath, child);
    const issue = { field, keyword: error.keyword, message: describe(error, valueAt(data, error.instancePath)) };
    const seen = byField.get(field);
    if (!seen || rank(issue.keyword) < rank(seen.keyword)) byField.set(field, issue);
  }
  return [...byField.values()];
}

function validate(name: string, data: unknown, base: string): FieldIssue[] {
  const validator = VALIDATORS[name];
  if (!validator) throw new Error(`@studiovault/outbox: no validator ${name}; regenerate src/generated`);
  return validator(data) ? [] : issuesOf(validator.errors ?? [], base, data);
}

function instant(value: Instant, field: string, issues: FieldIssue[]): number | undefined {
  let ms: number;
  if (value instanceof Date) {
    ms = value.getTime();
  } else if (typeof value === "number") {
    ms = value;
    if (!Number.isSafeInteger(ms)) {
      issues.push({ field, keyword: "time", message: "must be integer milliseconds since the epoch" });
      return undefined;
    }
  } else if (typeof value === "string" && ISO_WITH_OFFSET.test(value)) {
    ms = Date.parse(value);
  } else {
    issues.push({ field, keyword: "time", message: "must be a Date, epoch milliseconds, or an ISO-8601 string with an offset" });
    return undefined;
  }
  if (!(ms >= 0 && ms <= MAX_MS)) {
    issues.push({ field, keyword: "time", message: "is not a valid time between 1970 and 9999" });
    return undefined;
  }
  return ms;
}

function resolveVersion(type: string, schemaVersion: number | undefined): number {
  const known = SCHEMA_INDEX.events.filter((e) => e.type === type);
  if (known.length === 0) {
    throw new UnknownEventTypeError(
      `unknown event type ${JSON.stringify(type)}; external producers may publish: ${PUBLISHABLE_EVENT_TYPES.join(", ")}`,
      type,
      schemaVersion,
    );
  }
  if (!known.some((e) => e.external)) {
    throw new NotPublishableError(
      `${type} is published by the pipeline itself, not by external producers (they may publish: ${PUBLISHABLE_EVENT_TYPES.join(", ")})`,
      type,
    );
  }
  const versions = known.filter((e) => e.external).map((e) => e.schemaVersion as number);
  if (schemaVersion === undefined) {
    if (versions.length === 1) return versions[0] as number;
    throw new UnknownEventTypeError(`${type} has versions ${versions.join(", ")}: pass schemaVersion`, type, schemaVersion);
  }
  if (!versions.includes(schemaVersion)) {
    throw new UnknownEventTypeError(
      `${type} v${String(schemaVersion)} is not known; known: ${versions.map((v) => `v${v}`).join(", ")}`,
      type,
      schemaVersion,
    );
  }
  return schemaVersion;
}

/** JSON as it will be stored: `Date`s become ISO strings, `undefined` fields disappear. */
function asJson(payload: unknown, issues: FieldIssue[]): unknown {
  try {
    return JSON.parse(JSON.stringify(payload)) as unknown;
  } catch (error) {
    issues.push({ field: "payload", keyword: "json", message: `is not JSON-serialisable: ${String(error)}` });
    return undefined;
  }
}

function tenantIssues(payload: unknown, orgId: string, branchId: string | null): FieldIssue[] {
  if (payload === null || typeof payload !== "object") return [];
  const named = payload as Record<string, unknown>;
  const issues: FieldIssue[] = [];
  if (typeof named.org_id === "string" && named.org_id !== orgId) {
    issues.push({ field: "payload.org_id", keyword: "tenant", message: `must equal the event's orgId ${orgId}` });
  }
  if (typeof named.branch_id === "string" && named.branch_id !== branchId) {
    issues.push({
      field: branchId === null ? "branch_id" : "payload.branch_id",
      keyword: "tenant",
      message:
        branchId === null
          ? `is required: the payload names branch ${named.branch_id}`
          : `must equal the event's branchId ${branchId}`,
    });
  }
  return issues;
}

// ---- the row -----------------------------------------------------------------------------------------

/**
 * The `event_inbox` row for `event`, ready for `insertStatement` (raw D1) or `drizzleInsert` (Drizzle)
 * in the SAME batch as the change it describes. `payload_json` is the whole envelope, as the Python
 * pipeline's `Envelope` reads it. Status `pending`, attempts 0, times in integer ms.
 *
 * Throws `UnknownEventTypeError`, `NotPublishableError` or `EventValidationError` (naming the field:
 * `payload.project_id`, `org_id`, ...) instead of building a row the pipeline would dead-letter.
 */
export function buildInboxRow(event: OutboxEvent, opts: BuildOptions = {}): InboxRow {
  const type: string = event.type;
  const schemaVersion = resolveVersion(type, event.schemaVersion);
  const issues: FieldIssue[] = [];

  const nowMs = instant(opts.now ?? Date.now(), "now", issues);
  const occurredMs = instant(event.occurredAt ?? nowMs ?? 0, "occurred_at", issues);
  const availableMs = event.availableAt == null ? null : instant(event.availableAt, "available_at", issues);
  const eventId = opts.eventId ?? newEventId();
  if (opts.producer !== undefined && !PRODUCER_NAME.test(opts.producer)) {
    issues.push({ field: "producer", keyword: "pattern", message: `must match ${PRODUCER_NAME.source}` });
  }
  if (opts.eventId !== undefined && !isId(opts.eventId, "evt")) {
    issues.push({ field: "event_id", keyword: "pattern", message: `must be an ID of the form evt_<uuidv7> (got ${JSON.stringify(opts.eventId)})` });
  }
  const branchId = event.branchId ?? null;
  const payload = asJson(event.payload, issues);

  const envelope: Envelope = {
    event_id: eventId,
    type,
    schema_version: schemaVersion,
    occurred_at: new Date(occurredMs ?? 0).toISOString(),
    org_id: event.orgId,
    branch_id: branchId,
    dedupe_key: event.dedupeKey,
    payload: payload as Record<string, unknown>,
    available_at: availableMs == null ? null : new Date(availableMs).toISOString(),
  };
  issues.push(...validate("envelope", envelope, "").filter((i) => !issues.some((j) => j.field === i.field)));
  const validatorName = PAYLOAD_VALIDATORS[`${type}@${schemaVersion}`];
  if (validatorName === undefined) throw new Error(`@studiovault/outbox: no payload validator for ${type} v${schemaVersion}`);
  if (payload !== null && typeof payload === "object" && !Array.isArray(payload)) {
    issues.push(...validate(validatorName, payload, "payload"));
    issues.push(...tenantIssues(payload, event.orgId, branchId));
  }
  if (issues.length > 0 || nowMs === undefined || occurredMs === undefined) throw new EventValidationError(type, issues);

  return {
    id: eventId,
    type,
    schema_version: schemaVersion,
    org_id: event.orgId,
    branch_id: branchId,
    dedupe_key: event.dedupeKey,
    payload_json: JSON.stringify(envelope),
    status: "pending",
    attempts: 0,
    last_error: null,
    occurred_at: occurredMs,
    created_at: nowMs,
    available_at: availableMs ?? nowMs,
    updated_at: nowMs,
    applied_at: null,
    dead_at: null,
    version: 1,
    producer: opts.producer ?? "app",
    self_enqueued: 0,
  };
}

/** The dedupe key of a notification (events/notifications.py `notification_dedupe_key`): one per kind,
 * subject (project or invoice) and qualifier (e.g. a due date). */
export function notificationDedupeKey(kind: string, subjectId: string, qualifier = ""): string {
  return `notify:${kind}:${subjectId}${qualifier ? `:${qualifier}` : ""}`;
}
