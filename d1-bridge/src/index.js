// StudioVault D1 bridge: a tiny authenticated HTTP front for the bound D1 database.
//
//   GET  /health                                         -> {"ok": true}                    (no auth)
//   POST /query  {"sql": "...", "params": [...]}         -> {"rows": [...]}
//   POST /batch  {"statements": [{"sql", "params"}, ...]} -> {"results": [{"rows", "changes", "last_row_id"}, ...]}
//   POST /batches {"units": [{"statements": [...]}, ...]}
//                 -> {"results": [{"results": [{"rows", "changes", "last_row_id"}, ...]} | {"error": {"message"}}, ...]}
//
// /batch is ONE D1 transaction (env.DB.batch): every statement commits or none does.
// /batches is group commit: each unit is its own env.DB.batch, run in order; a unit that fails (a version
// assertion, a constraint, ...) answers its error in its slot (D1's message verbatim) and the others still
// commit. Every statement of every unit is validated and checked against the token first: one refused
// statement refuses the whole request (403) before anything runs, exactly as for /batch.
//
// Two kinds of bearer token, each a list so a rotation can overlap (a JSON list or a comma list):
//   BRIDGE_TOKEN     the application's: data statements only (SELECT, INSERT, UPDATE, DELETE, REPLACE,
//                    WITH ..., VALUES) on the application's tables: no DDL, PRAGMA, ATTACH, VACUUM,
//                    transaction control, `sqlite_*`/`_cf_*` tables, and no writes to d1_migrations;
//   MIGRATION_TOKEN  the migrator's: any statement (CREATE, triggers, PRAGMA, d1_migrations ...).
// A request holding an application token with one statement outside that set is refused whole with 403,
// before anything runs. 401 (no or unknown token) and 403 carry no detail.
// Errors: {"error": {"message": "..."}} with 400 (malformed request), 401, 403, 404, 405, or 500 (D1's
// message verbatim). Secrets: `wrangler secret put BRIDGE_TOKEN` / `MIGRATION_TOKEN`. Binding: DB (D1).

import { isDataStatement } from "./classify.js";

const MAX_STATEMENTS = 1000;

class BadRequest extends Error {}

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

function error(message, status, headers) {
  return json({ error: { message } }, status, headers);
}

// A token setting is a list, so a rotation can overlap: a JSON list (["new", "old"]) or a comma list.
export function tokenList(value) {
  if (typeof value !== "string") return [];
  const text = value.trim();
  if (text.startsWith("[")) {
    try {
      const parsed = JSON.parse(text);
      return Array.isArray(parsed) ? parsed.filter((t) => typeof t === "string" && t.trim()).map((t) => t.trim()) : [];
    } catch {
      return [];
    }
  }
  return text.split(",").map((t) => t.trim()).filter(Boolean);
}

// Constant-time comparison: hash both sides so lengths never differ, then timingSafeEqual. Every
// configured token is compared (no early exit), so the time taken does not say which list matched.
async function digest(text) {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
}

async function matchesAny(givenDigest, tokens) {
  let matched = false;
  for (const token of tokens) {
    matched = crypto.subtle.timingSafeEqual(givenDigest, await digest(token)) || matched;
  }
  return matched;
}

// "app" (data statements only), "migrate" (anything), or null. A token in both lists is an app token.
async function roleOf(request, env) {
  const header = request.headers.get("authorization") ?? "";
  const given = header.startsWith("Bearer ") ? header.slice("Bearer ".length) : "";
  if (!given) return null;
  const givenDigest = await digest(given);
  const [app, migrate] = await Promise.all([
    matchesAny(givenDigest, tokenList(env.BRIDGE_TOKEN)),
    matchesAny(givenDigest, tokenList(env.MIGRATION_TOKEN)),
  ]);
  if (app) return "app";
  return migrate ? "migrate" : null;
}

function isBindable(value) {
  return value === null || ["string", "number", "boolean"].includes(typeof value);
}

// Validates one {"sql", "params"} object; `where` names it in the error message.
function statement(item, where) {
  if (item === null || typeof item !== "object" || Array.isArray(item)) {
    throw new BadRequest(`${where}: expected an object {"sql": string, "params": array}`);
  }
  if (typeof item.sql !== "string" || item.sql.trim() === "") {
    throw new BadRequest(`${where}: "sql" must be a non-empty string`);
  }
  const params = item.params ?? [];
  if (!Array.isArray(params)) throw new BadRequest(`${where}: "params" must be an array`);
  if (!params.every(isBindable)) {
    throw new BadRequest(`${where}: params may only be null, numbers, strings or booleans`);
  }
  return { sql: item.sql, params };
}

async function readBody(request) {
  try {
    return await request.json();
  } catch {
    throw new BadRequest("request body is not valid JSON");
  }
}

class Forbidden extends Error {}

function allowed(statements, role) {
  if (role !== "migrate" && !statements.every((s) => isDataStatement(s.sql))) throw new Forbidden();
  return statements;
}

async function handleQuery(request, db, role) {
  const [{ sql, params }] = allowed([statement(await readBody(request), "query")], role);
  const result = await db.prepare(sql).bind(...params).all();
  return json({ rows: result.results ?? [] });
}

async function handleBatch(request, db, role) {
  const body = await readBody(request);
  const items = body?.statements;
  if (!Array.isArray(items) || items.length === 0) {
    throw new BadRequest('"statements" must be a non-empty array');
  }
  if (items.length > MAX_STATEMENTS) {
    throw new BadRequest(`too many statements: ${items.length} > ${MAX_STATEMENTS}`);
  }
  const stmts = allowed(items.map((item, i) => statement(item, `statements[${i}]`)), role);
  const results = await db.batch(stmts.map((s) => db.prepare(s.sql).bind(...s.params)));
  return json({ results: batchResults(results) });
}

function statements(items, where) {
  if (!Array.isArray(items)) throw new BadRequest(`${where}: "statements" must be an array`);
  return items.map((item, i) => statement(item, `${where}statements[${i}]`));
}

function batchResults(results) {
  return results.map((r) => ({
    rows: r.results ?? [],
    changes: r.meta?.changes ?? 0,
    last_row_id: r.meta?.last_row_id ?? null,
  }));
}

async function handleBatches(request, db, role) {
  const body = await readBody(request);
  const items = body?.units;
  if (!Array.isArray(items)) throw new BadRequest('"units" must be an array');
  const units = items.map((unit, u) => {
    if (unit === null || typeof unit !== "object" || Array.isArray(unit)) {
      throw new BadRequest(`units[${u}]: expected an object {"statements": array}`);
    }
    return statements(unit.statements, `units[${u}].`);
  });
  const total = units.reduce((n, unit) => n + unit.length, 0);
  if (total > MAX_STATEMENTS || units.length > MAX_STATEMENTS) {
    throw new BadRequest(`too many statements: ${total} in ${units.length} units > ${MAX_STATEMENTS}`);
  }
  for (const unit of units) allowed(unit, role); // all checked before any unit runs
  const results = [];
  for (const unit of units) {
    if (unit.length === 0) {
      results.push({ results: [] });
      continue;
    }
    try {
      results.push({ results: batchResults(await db.batch(unit.map((s) => db.prepare(s.sql).bind(...s.params)))) });
    } catch (e) {
      results.push({ error: { message: String(e?.message ?? e) } });
    }
  }
  return json({ results });
}

const ROUTES = { "/query": handleQuery, "/batch": handleBatch, "/batches": handleBatches };

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === "/health") {
      return request.method === "GET" || request.method === "HEAD"
        ? json({ ok: true })
        : error("method not allowed", 405, { allow: "GET" });
    }
    const handler = ROUTES[pathname];
    if (!handler) return error("not found", 404);
    if (request.method !== "POST") return error("method not allowed", 405, { allow: "POST" });
    const role = await roleOf(request, env);
    if (role === null) return error("unauthorized", 401, { "www-authenticate": "Bearer" });
    try {
      return await handler(request, env.DB, role);
    } catch (e) {
      if (e instanceof Forbidden) return error("forbidden", 403);
      if (e instanceof BadRequest) return error(e.message, 400);
      // D1 errors (constraint, trigger RAISE, syntax, limits, "Network connection lost", ...):
      // the message is passed through verbatim so the client can classify it.
      return error(String(e?.message ?? e), 500);
    }
  },
};
