// StudioVault D1 bridge: a tiny authenticated HTTP front for the bound D1 database.
//
//   GET  /health                                         -> {"ok": true}                    (no auth)
//   POST /query  {"sql": "...", "params": [...]}         -> {"rows": [...]}
//   POST /batch  {"statements": [{"sql", "params"}, ...]} -> {"results": [{"rows", "changes", "last_row_id"}, ...]}
//
// /batch is ONE D1 transaction (env.DB.batch): every statement commits or none does.
// Errors: {"error": {"message": "..."}} with 400 (malformed request), 401, 404, 405, or 500 (D1's message verbatim).
// Secrets: BRIDGE_TOKEN (`wrangler secret put BRIDGE_TOKEN`). Binding: DB (D1).

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

// Constant-time comparison: hash both sides so lengths never differ, then timingSafeEqual.
async function tokenMatches(request, expected) {
  const header = request.headers.get("authorization") ?? "";
  const given = header.startsWith("Bearer ") ? header.slice("Bearer ".length) : "";
  if (!expected || !given) return false;
  const enc = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", enc.encode(given)),
    crypto.subtle.digest("SHA-256", enc.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
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

async function handleQuery(request, db) {
  const { sql, params } = statement(await readBody(request), "query");
  const result = await db.prepare(sql).bind(...params).all();
  return json({ rows: result.results ?? [] });
}

async function handleBatch(request, db) {
  const body = await readBody(request);
  const items = body?.statements;
  if (!Array.isArray(items) || items.length === 0) {
    throw new BadRequest('"statements" must be a non-empty array');
  }
  if (items.length > MAX_STATEMENTS) {
    throw new BadRequest(`too many statements: ${items.length} > ${MAX_STATEMENTS}`);
  }
  const stmts = items.map((item, i) => statement(item, `statements[${i}]`));
  const results = await db.batch(stmts.map((s) => db.prepare(s.sql).bind(...s.params)));
  return json({
    results: results.map((r) => ({
      rows: r.results ?? [],
      changes: r.meta?.changes ?? 0,
      last_row_id: r.meta?.last_row_id ?? null,
    })),
  });
}

const ROUTES = { "/query": handleQuery, "/batch": handleBatch };

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
    if (!(await tokenMatches(request, env.BRIDGE_TOKEN))) {
      return error("missing or wrong bearer token", 401, { "www-authenticate": "Bearer" });
    }
    try {
      return await handler(request, env.DB);
    } catch (e) {
      if (e instanceof BadRequest) return error(e.message, 400);
      // D1 errors (constraint, trigger RAISE, syntax, limits, "Network connection lost", ...):
      // the message is passed through verbatim so the client can classify it.
      return error(String(e?.message ?? e), 500);
    }
  },
};
