import { uuidv7 } from "uuidv7";

import { SCHEMA_INDEX } from "./generated/schemas.js";

/** The ID prefixes the pipeline knows (events/ids.py `PREFIXES`): `org`, `brn`, `prj`, `ntf`, `evt`, ... */
export type IdPrefix = keyof typeof SCHEMA_INDEX.idPatterns;

const PATTERNS: Readonly<Record<string, RegExp>> = Object.fromEntries(
  Object.entries(SCHEMA_INDEX.idPatterns).map(([prefix, pattern]) => [prefix, new RegExp(pattern)]),
);

/** A fresh `<prefix>_<uuidv7>` ID (time-sortable; made by whoever creates the record). */
export function newId(prefix: IdPrefix): string {
  if (!(prefix in PATTERNS)) throw new TypeError(`unknown ID prefix ${JSON.stringify(prefix)}`);
  return `${prefix}_${uuidv7()}`;
}

/** A fresh event ID, `evt_<uuidv7>`: the `event_inbox` row's id and the pipeline's job id. */
export function newEventId(): string {
  return newId("evt");
}

/** Whether `value` is a canonical `<prefix>_<uuidv7>` ID (lowercase, version 7, RFC 4122 variant). */
export function isId(value: unknown, prefix: IdPrefix): value is string {
  const pattern = PATTERNS[prefix];
  return typeof value === "string" && pattern !== undefined && pattern.test(value);
}
