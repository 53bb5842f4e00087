#!/usr/bin/env node
// @studiovault/outbox tests: `npm test` (builds first), or `node test/run.mjs` after `npm run build`.
//
// Unit tests run the built package (dist/) in Node. The rest start ONE Miniflare (workerd's real D1) with
// the test app Worker (test-worker/: Drizzle on D1, using this package as the app would) and the
// pipeline's D1 bridge Worker on the same database, migrated with ../migrations exactly as the files are.
// If the pipeline's Python venv is there (../.venv, or $SV_PYTHON), the Python Envelope/EventRegistry parse
// every event row the Worker wrote. Local only: no network. Bounded: a watchdog ends the run after 60 s.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { UUID } from "uuidv7";

import {
  buildInboxRow,
  EventValidationError,
  INSERT_SQL,
  isId,
  newEventId,
  newId,
  NotPublishableError,
  UnknownEventTypeError,
} from "../dist/index.js";
import { MIGRATIONS_DIR, REPO, ROOT, startServers } from "./harness.mjs";
import { migrationFiles, splitStatements } from "./migrations.mjs";

const WATCHDOG = setTimeout(() => {
  process.stderr.write("run.mjs: still running after 60 s; giving up\n");
  process.exit(1);
}, 60_000);
WATCHDOG.unref();

const TOKEN = "outbox-test-token";
const DAY = 24 * 60 * 60 * 1000;
const COLUMNS = [
  "id", "type", "schema_version", "org_id", "branch_id", "dedupe_key", "payload_json", "status", "attempts",
  "last_error", "occurred_at", "created_at", "available_at", "updated_at", "applied_at", "dead_at", "version",
  "producer", "self_enqueued",
];
const ENVELOPE_FIELDS = [
  "event_id", "type", "schema_version", "occurred_at", "org_id", "branch_id", "dedupe_key", "payload", "available_at",
];

/** A UUIDv7 made `ms` since the epoch, as an offline desktop would have made it then. */
function uuidv7At(ms) {
  const [a, b, c] = crypto.getRandomValues(new Uint32Array(3));
  return UUID.fromFieldsV7(ms, a & 0xfff, b & 0x3fffffff, c).toString();
}

function expectRefusal(fn, ErrorClass, field) {
  let caught;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ErrorClass, `expected ${ErrorClass.name}, got ${caught?.stack ?? caught}`);
  if (field !== undefined) assert.equal(caught.field, field, caught.message);
  return caught;
}

const org = newId("org");
const branch = newId("brn");
const client = newId("cli");
const project = newId("prj");
const notification = (overrides = {}) => ({
  type: "notification.due",
  orgId: org,
  branchId: branch,
  dedupeKey: `notify:booking_confirmed:${project}`,
  payload: { notification_id: newId("ntf"), kind: "booking_confirmed", project_id: project },
  ...overrides,
});

describe("package (Node)", () => {
  test("newEventId and newId give canonical, time-ordered UUIDv7 ids", () => {
    const ids = Array.from({ length: 200 }, () => newEventId());
    for (const id of ids) assert.match(id, /^evt_[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids, "ids made one after another sort in that order");
    assert.ok(isId(newId("prj"), "prj"));
    assert.ok(!isId(newId("prj"), "org"));
    assert.ok(!isId(`${newId("org")}\n`, "org"), "a trailing newline is not an id");
    assert.ok(!isId(`org_${crypto.randomUUID()}`, "org"), "a UUIDv4 is not an id");
  });

  test("buildInboxRow: exactly event_inbox's columns; payload_json is the whole envelope", () => {
    const now = Date.UTC(2026, 4, 1, 10, 0, 0, 123);
    const event = notification({ occurredAt: now - 5000, availableAt: "2026-05-01T21:30:00+05:30" });
    const row = buildInboxRow(event, { now });
    assert.deepEqual(Object.keys(row), COLUMNS);
    assert.match(row.id, /^evt_/);
    assert.equal(row.status, "pending");
    assert.equal(row.attempts, 0);
    assert.equal(row.version, 1);
    assert.equal(row.occurred_at, now - 5000);
    assert.equal(row.created_at, now);
    assert.equal(row.updated_at, now);
    assert.equal(row.available_at, Date.UTC(2026, 4, 1, 16, 0, 0));
    for (const column of ["occurred_at", "created_at", "available_at", "updated_at"]) {
      assert.ok(Number.isSafeInteger(row[column]), `${column} is an integer`);
    }
    const envelope = JSON.parse(row.payload_json);
    assert.deepEqual(Object.keys(envelope), ENVELOPE_FIELDS);
    assert.equal(envelope.event_id, row.id);
    assert.equal(envelope.occurred_at, "2026-05-01T09:59:55.123Z");
    assert.equal(envelope.available_at, "2026-05-01T16:00:00.000Z");
    assert.deepEqual(envelope.payload, event.payload);
    assert.match(INSERT_SQL, /ON CONFLICT \(dedupe_key\) DO NOTHING$/);
  });

  test("buildInboxRow: no availableAt means available now, and null in the envelope", () => {
    const row = buildInboxRow(notification(), { now: 1_777_000_000_000 });
    assert.equal(row.available_at, 1_777_000_000_000);
    assert.equal(JSON.parse(row.payload_json).available_at, null);
  });

  test("an invalid event is refused with a typed error naming the field", () => {
    const bad = (payload, extra = {}) => () =>
      buildInboxRow(notification({ payload: { ...notification().payload, ...payload }, ...extra }));
    expectRefusal(bad({ notification_id: "ntf_123" }), EventValidationError, "payload.notification_id");
    expectRefusal(bad({ notification_id: newId("prj") }), EventValidationError, "payload.notification_id");
    expectRefusal(bad({ project_id: undefined }), EventValidationError, "payload.project_id");
    expectRefusal(bad({ channel: "fax" }), EventValidationError, "payload.channel");
    expectRefusal(bad({ colour: "red" }), EventValidationError, "payload.colour");
    expectRefusal(bad({ kind: "X" }), EventValidationError, "payload.kind");
    expectRefusal(bad({}, { orgId: "org_1" }), EventValidationError, "org_id");
    expectRefusal(bad({}, { branchId: newId("org") }), EventValidationError, "branch_id");
    expectRefusal(bad({}, { dedupeKey: "" }), EventValidationError, "dedupe_key");
    expectRefusal(bad({}, { occurredAt: "2026-05-01T10:00:00" }), EventValidationError, "occurred_at");
    expectRefusal(bad({}, { occurredAt: 1.5 }), EventValidationError, "occurred_at");
    expectRefusal(() => buildInboxRow(notification(), { eventId: "evt_nope" }), EventValidationError, "event_id");
    expectRefusal(() => buildInboxRow(notification(), { producer: "Desktop Sync" }), EventValidationError, "producer");
    assert.equal(buildInboxRow(notification(), { producer: "desktop-sync" }).producer, "desktop-sync");
    const error = expectRefusal(bad({ notification_id: "x", urgent: "yes" }), EventValidationError);
    assert.deepEqual(error.issues.map((i) => i.field).sort(), ["payload.notification_id", "payload.urgent"]);
    assert.match(error.message, /payload\.notification_id must be an ID of the form ntf_<uuidv7>/);
  });

  test("media.uploaded: the payload's tenant must be the event's", () => {
    const media = (orgId, branchId) => ({
      type: "media.uploaded",
      orgId,
      branchId,
      dedupeKey: "app:media:1",
      payload: {
        org_id: org, branch_id: branch, project_id: project, bucket: "media", file_type: "raw", size_bytes: 1,
        etag: "e", event_time: new Date(), key: `orgs/${org}/branches/${branch}/projects/${project}/raw/a.jpg`,
      },
    });
    assert.equal(buildInboxRow(media(org, branch)).type, "media.uploaded");
    expectRefusal(() => buildInboxRow(media(newId("org"), branch)), EventValidationError, "payload.org_id");
    expectRefusal(() => buildInboxRow(media(org, newId("brn"))), EventValidationError, "payload.branch_id");
    expectRefusal(() => buildInboxRow(media(org, null)), EventValidationError, "branch_id");
    // ajv's date-time alone would take these; pydantic's AwareDatetime does not (the schema's pattern says so).
    for (const eventTime of ["2026-05-01T10:00:00+05", "2026-06-30T23:59:60Z", "2026-05-01T10:00:00"]) {
      const event = media(org, branch);
      event.payload.event_time = eventTime;
      const error = expectRefusal(() => buildInboxRow(event), EventValidationError, "payload.event_time");
      assert.match(error.message, /ISO-8601 date-time with a UTC offset/);
    }
    const withOffset = media(org, branch);
    withOffset.payload.event_time = "2026-05-01T10:00:00.123456+05:30";
    assert.equal(JSON.parse(buildInboxRow(withOffset).payload_json).payload.event_time, "2026-05-01T10:00:00.123456+05:30");
  });

  test("types external producers may not publish are refused", () => {
    for (const type of ["payment.captured", "payment.refund_processed", "billing.period_closed"]) {
      expectRefusal(() => buildInboxRow(notification({ type, payload: {} })), NotPublishableError);
    }
    expectRefusal(() => buildInboxRow(notification({ type: "project.created" })), UnknownEventTypeError);
    expectRefusal(() => buildInboxRow(notification({ schemaVersion: 2 })), UnknownEventTypeError);
  });

  test("src/generated is up to date with ../schemas", () => {
    const check = spawnSync(process.execPath, [join(ROOT, "scripts", "gen-schemas.mjs"), "--check"], {
      encoding: "utf8",
      timeout: 20_000,
    });
    assert.equal(check.status, 0, check.stderr || check.stdout);
  });
});

describe("transactional outbox under miniflare (app Worker + D1 bridge, one D1)", () => {
  let servers;
  const rowsWritten = [];

  const post = async (path, body) => {
    const response = await fetch(`${servers.appUrl}${path}`, { method: "POST", body: JSON.stringify(body) });
    return { status: response.status, body: await response.json() };
  };
  const query = async (sql, ...params) => (await servers.db.prepare(sql).bind(...params).all()).results;
  const eventById = async (id) => (await query("SELECT * FROM event_inbox WHERE id = ?", id))[0];
  const countWhere = async (table, column, value) =>
    (await query(`SELECT count(*) AS n FROM ${table} WHERE ${column} = ?`, value))[0].n;

  before(async () => {
    servers = await startServers({ token: TOKEN });
    await servers.db.batch([
      servers.db.prepare("INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)").bind(org, "Studio", Date.now()),
      servers.db.prepare("INSERT INTO branches (id, org_id, name, created_at) VALUES (?, ?, ?, ?)").bind(branch, org, "BLR", Date.now()),
      servers.db
        .prepare("INSERT INTO clients (id, branch_id, name, phone, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(client, branch, "Asha", "+919800000000", Date.now()),
    ]);
  });
  after(async () => {
    await servers?.mf.dispose();
  });

  test("the migrations are applied exactly as the files are, recorded as wrangler records them", async () => {
    const files = migrationFiles(MIGRATIONS_DIR);
    assert.deepEqual(servers.applied, files);
    assert.deepEqual((await query("SELECT name FROM d1_migrations ORDER BY id")).map((r) => r.name), files);
    // The live triggers are the ones the files create, less those a later file drops (DROP TRIGGER, or
    // DROP TABLE of the table they are on, as 0009 does when it rebuilds gateway_objects).
    const live = new Map();
    for (const f of files) {
      for (const s of splitStatements(readFileSync(join(MIGRATIONS_DIR, f), "utf8"))) {
        const created = /^CREATE\s+TRIGGER\s+(\w+)\b[\s\S]*?\bON\s+(\w+)/i.exec(s);
        const droppedTrigger = /^DROP\s+TRIGGER\s+(?:IF\s+EXISTS\s+)?(\w+)/i.exec(s);
        const droppedTable = /^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(\w+)/i.exec(s);
        if (created) live.set(created[1], created[2]);
        if (droppedTrigger) live.delete(droppedTrigger[1]);
        if (droppedTable) for (const [name, table] of live) if (table === droppedTable[1]) live.delete(name);
      }
    }
    const rows = await query("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name");
    const n = rows.length;
    assert.deepEqual(rows.map((r) => r.name), [...live.keys()].sort());
    assert.ok(n >= 14, `expected the guard triggers, found ${n}`);
    const columns = (await query("SELECT name FROM pragma_table_info('event_inbox') ORDER BY cid")).map((r) => r.name);
    assert.deepEqual(columns, COLUMNS, "InboxRow has exactly event_inbox's columns, in order");
  });

  for (const api of ["raw", "drizzle"]) {
    test(`${api}: a project and its notification.due event commit in one batch; a repeat is a no-op`, async () => {
      const projectId = newId("prj");
      const created = await post("/projects", { api, orgId: org, branchId: branch, clientId: client, projectId });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.eventInserted, true);
      assert.equal(await countWhere("projects", "id", projectId), 1);
      const row = await eventById(created.body.eventId);
      assert.ok(row, "the event row exists");
      rowsWritten.push(row);
      assert.equal(row.type, "notification.due");
      assert.equal(row.status, "pending");
      assert.equal(row.attempts, 0);
      assert.equal(row.dedupe_key, `notify:booking_confirmed:${projectId}`);
      assert.equal(row.producer, "app");
      assert.equal(row.self_enqueued, 0, "the pipeline's feed poller enqueues it, not the app");
      assert.equal(await countWhere("inbox_feed", "event_id", row.id), 1, "the trigger fed it to the poller");
      const [types] = await query(
        "SELECT typeof(occurred_at) AS o, typeof(created_at) AS c, typeof(available_at) AS a, typeof(updated_at) AS u," +
          " typeof(schema_version) AS s, typeof(attempts) AS n FROM event_inbox WHERE id = ?",
        row.id,
      );
      assert.deepEqual(Object.values(types), Array(6).fill("integer"), "times and counters are stored as INTEGER");
      const envelope = JSON.parse(row.payload_json);
      assert.deepEqual(Object.keys(envelope), ENVELOPE_FIELDS);
      assert.equal(envelope.event_id, row.id);
      assert.equal(envelope.payload.project_id, projectId);
      assert.ok(Math.abs(row.created_at - Date.now()) < 60_000);

      // The same dedupe key again (a retried request, a second tap): the domain write commits, the event
      // is not duplicated, and the batch does not fail.
      const again = await post("/projects", {
        api, orgId: org, branchId: branch, clientId: client, dedupeKey: row.dedupe_key,
      });
      assert.equal(again.status, 201, JSON.stringify(again.body));
      assert.equal(again.body.eventInserted, false);
      assert.equal(await countWhere("event_inbox", "dedupe_key", row.dedupe_key), 1);
      assert.equal(await eventById(again.body.eventId), undefined);
      assert.equal(await countWhere("inbox_feed", "event_id", again.body.eventId), 0);
      assert.equal(await countWhere("projects", "id", again.body.projectId), 1);
    });

    for (const eventFirst of [false, true]) {
      test(`${api}: a batch that fails on a foreign key leaves no event (event ${eventFirst ? "first" : "last"})`, async () => {
        const projectId = newId("prj");
        const dedupeKey = `test:fk:${api}:${eventFirst}`;
        const failed = await post("/projects", {
          api, orgId: org, branchId: branch, clientId: newId("cli"), projectId, dedupeKey, eventFirst,
        });
        assert.equal(failed.status, 409, JSON.stringify(failed.body));
        assert.match(failed.body.error.message, /FOREIGN KEY constraint failed/);
        assert.equal(await countWhere("event_inbox", "dedupe_key", dedupeKey), 0);
        assert.equal((await query("SELECT count(*) AS n FROM inbox_feed f LEFT JOIN event_inbox i ON i.id = f.event_id WHERE i.id IS NULL"))[0].n, 0,
          "no feed row outlives its rolled-back event");
        assert.equal(await countWhere("projects", "id", projectId), 0);
      });
    }

    test(`${api}: a media_objects row and its media.uploaded event commit together`, async () => {
      const projectId = newId("prj");
      assert.equal((await post("/projects", { api, orgId: org, branchId: branch, clientId: client, projectId })).status, 201);
      const created = await post("/media", {
        api, orgId: org, branchId: branch, projectId, name: "ceremony/IMG_0001.jpg", sizeBytes: 4_200_000, etag: "abc123",
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.eventInserted, true);
      assert.equal(await countWhere("media_objects", "id", created.body.mediaId), 1);
      const row = await eventById(created.body.eventId);
      rowsWritten.push(row);
      const envelope = JSON.parse(row.payload_json);
      assert.equal(envelope.type, "media.uploaded");
      assert.equal(envelope.payload.key, created.body.key);
      assert.equal(envelope.payload.size_bytes, 4_200_000);
    });
  }

  test("an event the outbox refuses fails the request before anything is written", async () => {
    const projectId = newId("prj");
    const refused = await post("/projects", {
      api: "drizzle", orgId: org, branchId: branch, clientId: client, projectId, notificationId: "ntf_not-a-uuid",
    });
    assert.equal(refused.status, 422, JSON.stringify(refused.body));
    assert.equal(refused.body.error.name, "EventValidationError");
    assert.equal(refused.body.error.field, "payload.notification_id");
    assert.equal(await countWhere("projects", "id", projectId), 0);
  });

  test("a desktop-style event whose UUIDv7s are three days old is accepted as-is", async () => {
    const then = Date.now() - 3 * DAY;
    const ids = {
      eventId: `evt_${uuidv7At(then)}`,
      projectId: `prj_${uuidv7At(then - 1000)}`,
      notificationId: `ntf_${uuidv7At(then)}`,
    };
    const occurredAt = new Date(then).toISOString();
    const created = await post("/projects", {
      api: "drizzle", orgId: org, branchId: branch, clientId: client, occurredAt, ...ids,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.eventId, ids.eventId);
    const row = await eventById(ids.eventId);
    rowsWritten.push(row);
    assert.equal(row.occurred_at, then, "occurred_at is the desktop's time, not the sync's");
    assert.ok(Math.abs(row.created_at - Date.now()) < 60_000, "created_at is when the inbox accepted it");
    assert.equal(row.available_at, row.created_at, "available at once, not three days ago or later");
    const [{ seq }] = await query("SELECT seq FROM inbox_feed WHERE event_id = ?", ids.eventId);
    const [{ top }] = await query("SELECT max(seq) AS top FROM inbox_feed");
    assert.equal(seq, top, "its feed seq is the newest, though its id is the oldest");
    const envelope = JSON.parse(row.payload_json);
    assert.equal(envelope.event_id, ids.eventId);
    assert.equal(envelope.occurred_at, occurredAt);
    assert.equal(envelope.payload.project_id, ids.projectId);
    assert.equal(envelope.payload.notification_id, ids.notificationId);
  });

  test("the D1 bridge Worker reads the rows the app Worker wrote (same database)", async () => {
    const [row] = rowsWritten;
    const response = await fetch(`${servers.bridgeUrl}/query`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ sql: "SELECT * FROM event_inbox WHERE id = ?", params: [row.id] }),
    });
    assert.equal(response.status, 200);
    assert.deepEqual((await response.json()).rows, [row]);
    const denied = await fetch(`${servers.bridgeUrl}/query`, { method: "POST", body: "{}" });
    assert.equal(denied.status, 401);
  });

  const python = process.env.SV_PYTHON ?? join(REPO, ".venv", "bin", "python");
  test(
    "the Python pipeline's Envelope and EventRegistry accept every row the Worker wrote",
    { skip: existsSync(python) ? false : `no Python venv at ${python} (set SV_PYTHON)` },
    () => {
      assert.ok(rowsWritten.length >= 5, `rows to check: ${rowsWritten.length}`);
      const script = `
import json, sys
from events.envelope import Envelope
from events.media import MediaDeleted, MediaUploaded
from events.notifications import NotificationDue
from events.registry import EventRegistry

def ms(moment):
    return int(moment.timestamp() * 1000)

registry = EventRegistry([NotificationDue, MediaUploaded, MediaDeleted])
for row in json.load(sys.stdin):
    envelope = Envelope.model_validate_json(row["payload_json"])
    event = registry.parse(envelope)
    assert envelope.event_id == row["id"], (envelope.event_id, row["id"])
    assert (envelope.type, envelope.schema_version) == (row["type"], row["schema_version"])
    assert (envelope.org_id, envelope.branch_id, envelope.dedupe_key) == (row["org_id"], row["branch_id"], row["dedupe_key"])
    assert ms(envelope.occurred_at) == row["occurred_at"], (envelope.occurred_at, row["occurred_at"])
    available = ms(envelope.available_at) if envelope.available_at else row["created_at"]
    assert available == row["available_at"], (available, row["available_at"])
    print(type(event).__name__, envelope.event_id)
`;
      const run = spawnSync(python, ["-c", script], {
        cwd: REPO,
        input: JSON.stringify(rowsWritten),
        encoding: "utf8",
        timeout: 20_000,
      });
      assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
      assert.equal(run.stdout.trim().split("\n").length, rowsWritten.length);
    },
  );
});
