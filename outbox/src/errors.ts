/** One reason an event was refused: which field, and what is wrong with it. */
export interface FieldIssue {
  /** The field, dotted from the envelope: `payload.project_id`, `org_id`, `dedupe_key`, ... */
  readonly field: string;
  /** What is wrong, e.g. `must be a prj_<uuidv7> id`. */
  readonly message: string;
  /** The JSON Schema keyword that failed (`pattern`, `required`, `format`, ...), or `tenant`/`time`. */
  readonly keyword: string;
}

/** Base of every error this package throws: catch it to tell a refused event from a D1 failure. */
export class OutboxError extends Error {
  override name = "OutboxError";
}

/** The event type (or the type at this schema version) is not one the pipeline knows. */
export class UnknownEventTypeError extends OutboxError {
  override name = "UnknownEventTypeError";
  constructor(
    message: string,
    readonly type: string,
    readonly schemaVersion: number | undefined,
  ) {
    super(message);
  }
}

/** The pipeline knows the type, but only its own producers (gateway ingress, crons) may publish it. */
export class NotPublishableError extends OutboxError {
  override name = "NotPublishableError";
  constructor(
    message: string,
    readonly type: string,
  ) {
    super(message);
  }
}

/** The event does not validate: `field` names the first offending field, `issues` lists them all. */
export class EventValidationError extends OutboxError {
  override name = "EventValidationError";
  readonly field: string;
  constructor(
    readonly type: string,
    readonly issues: readonly FieldIssue[],
  ) {
    const first = issues[0] ?? { field: "event", message: "is invalid", keyword: "unknown" };
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more: ${issues.slice(1).map((i) => i.field).join(", ")})` : "";
    super(`${type}: ${first.field} ${first.message}${more}`);
    this.field = first.field;
  }
}
