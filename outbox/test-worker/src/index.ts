// A test Worker written like the StudioVault app: Drizzle on D1, and every pipeline event it publishes
// goes into event_inbox in the SAME batch as the change it describes (a transactional outbox).
//
//   POST /projects  {api, orgId, branchId, clientId, projectId?, notificationId?, eventId?, occurredAt?,
//                    dedupeKey?, eventFirst?}      -> a projects row + its notification.due event
//   POST /media     {api, orgId, branchId, projectId, name, sizeBytes, etag, fileType?, mediaId?}
//                                                  -> a media_objects row + its media.uploaded event
//   GET  /health
//
// `api` is "raw" (env.DB.batch + insertStatement) or "drizzle" (db.batch + drizzleInsert). `eventFirst`
// puts the event's INSERT before the domain write, to show a later failure rolls the event back too.
// Answers 201 {.., eventId, eventInserted}, 422 for an event the outbox refuses, 409 when the batch fails.

import { drizzle } from "drizzle-orm/d1";
import {
  buildInboxRow,
  drizzleInsert,
  type InboxRow,
  insertStatement,
  newId,
  notificationDedupeKey,
  OutboxError,
  EventValidationError,
} from "@studiovault/outbox";

import { mediaObjects, projects } from "./schema.js";

export interface Env {
  DB: D1Database;
}

type Api = "raw" | "drizzle";

interface ProjectRequest {
  api: Api;
  orgId: string;
  branchId: string;
  clientId: string;
  projectId?: string;
  notificationId?: string;
  eventId?: string;
  occurredAt?: string | number;
  dedupeKey?: string;
  eventFirst?: boolean;
}

interface MediaRequest {
  api: Api;
  orgId: string;
  branchId: string;
  projectId: string;
  name: string;
  sizeBytes: number;
  etag: string;
  fileType?: "proxy" | "raw" | "delivery" | "ingest";
  mediaId?: string;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

function ordered<T>(domain: T, event: T, eventFirst: boolean | undefined): [T, T] {
  return eventFirst ? [event, domain] : [domain, event];
}

async function createProject(env: Env, req: ProjectRequest): Promise<Response> {
  const now = Date.now();
  const project = {
    id: req.projectId ?? newId("prj"),
    branchId: req.branchId,
    clientId: req.clientId,
    status: "active",
    createdAt: now,
    version: 1,
  };
  const row = buildInboxRow(
    {
      type: "notification.due",
      orgId: req.orgId,
      branchId: req.branchId,
      dedupeKey: req.dedupeKey ?? notificationDedupeKey("booking_confirmed", project.id),
      payload: { notification_id: req.notificationId ?? newId("ntf"), kind: "booking_confirmed", project_id: project.id },
      ...(req.occurredAt !== undefined ? { occurredAt: req.occurredAt } : {}),
    },
    { now, ...(req.eventId !== undefined ? { eventId: req.eventId } : {}) },
  );
  let eventChanges: number;
  if (req.api === "drizzle") {
    const db = drizzle(env.DB);
    const [first, second] = ordered<"domain" | "event">("domain", "event", req.eventFirst);
    const query = { domain: db.insert(projects).values(project), event: drizzleInsert(db, row) };
    const results = await db.batch([query[first], query[second]]);
    eventChanges = results[first === "event" ? 0 : 1].meta.changes;
  } else {
    const domain = env.DB.prepare(
      "INSERT INTO projects (id, branch_id, client_id, status, created_at, version) VALUES (?, ?, ?, ?, ?, ?)",
    ).bind(project.id, project.branchId, project.clientId, project.status, project.createdAt, project.version);
    const results = await env.DB.batch(ordered(domain, insertStatement(env.DB, row), req.eventFirst));
    eventChanges = results[req.eventFirst ? 0 : 1]?.meta.changes ?? -1;
  }
  return created(row, { projectId: project.id }, eventChanges);
}

async function createMedia(env: Env, req: MediaRequest): Promise<Response> {
  const now = Date.now();
  const fileType = req.fileType ?? "delivery";
  const key = `orgs/${req.orgId}/branches/${req.branchId}/projects/${req.projectId}/${fileType}/${req.name}`;
  const media = {
    id: req.mediaId ?? newId("med"),
    projectId: req.projectId,
    branchId: req.branchId,
    path: key,
    fileType,
    sizeBytes: req.sizeBytes,
    watermarkState: fileType === "proxy" ? "proof" : fileType === "delivery" ? "clean" : null,
    uploadedAt: now,
    version: 1,
  };
  const row = buildInboxRow(
    {
      type: "media.uploaded",
      orgId: req.orgId,
      branchId: req.branchId,
      dedupeKey: `app:media:${media.id}:${req.etag}`,
      payload: {
        org_id: req.orgId,
        branch_id: req.branchId,
        project_id: req.projectId,
        bucket: "studiovault-media",
        key,
        file_type: fileType,
        event_time: new Date(now),
        size_bytes: req.sizeBytes,
        etag: req.etag,
      },
    },
    { now },
  );
  let eventChanges: number;
  if (req.api === "drizzle") {
    const db = drizzle(env.DB);
    const [, event] = await db.batch([db.insert(mediaObjects).values(media), drizzleInsert(db, row)]);
    eventChanges = event.meta.changes;
  } else {
    const results = await env.DB.batch([
      env.DB.prepare(
        "INSERT INTO media_objects (id, project_id, branch_id, path, file_type, size_bytes, watermark_state, uploaded_at, version)" +
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ).bind(media.id, media.projectId, media.branchId, media.path, media.fileType, media.sizeBytes, media.watermarkState,
        media.uploadedAt, media.version),
      insertStatement(env.DB, row),
    ]);
    eventChanges = results[1]?.meta.changes ?? -1;
  }
  return created(row, { mediaId: media.id, key }, eventChanges);
}

function created(row: InboxRow, extra: Record<string, unknown>, eventChanges: number): Response {
  // D1 counts the feed row the inbox trigger writes too (migration 0008): a new event changes 2 rows.
  return json({ ...extra, eventId: row.id, dedupeKey: row.dedupe_key, eventInserted: eventChanges > 0 }, 201);
}

function messageOf(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e instanceof Error && parts.length < 4; e = e.cause) parts.push(e.message);
  return parts.join(" <- ") || String(error);
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (pathname === "/health") return json({ ok: true });
    const route = { "/projects": createProject, "/media": createMedia }[pathname] as
      | ((env: Env, body: never) => Promise<Response>)
      | undefined;
    if (!route) return json({ error: { message: "not found" } }, 404);
    if (request.method !== "POST") return json({ error: { message: "method not allowed" } }, 405);
    const body = (await request.json()) as never;
    try {
      return await route(env, body);
    } catch (error) {
      if (error instanceof OutboxError) {
        const field = error instanceof EventValidationError ? error.field : undefined;
        return json({ error: { name: error.name, message: error.message, field } }, 422);
      }
      return json({ error: { name: "BatchFailed", message: messageOf(error) } }, 409);
    }
  },
} satisfies ExportedHandler<Env>;
