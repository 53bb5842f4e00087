#!/usr/bin/env node
// Runs the D1 bridge Worker (src/index.js) locally under miniflare, workerd's real D1 engine.
// Prints ONE JSON line {"url": "http://127.0.0.1:PORT"} on stdout when ready, then serves until
// SIGTERM/SIGINT or until its stdin closes (so a crashed parent never leaks it).

import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = dirname(fileURLToPath(import.meta.url));

const USAGE = `usage: node serve.mjs [--port N] [--token TOKEN] [--migration-token TOKEN] [--persist DIR] [--detached]

Serves the D1 bridge Worker on http://127.0.0.1:PORT under miniflare.

  --port N        port to listen on; 0 (the default) picks a free one
  --token TOKEN   the application's bearer token(s): data statements only (default: $BRIDGE_TOKEN; one of
                  them is required). A JSON list or a comma list gives several (a rotation).
  --migration-token TOKEN
                  the migrator's bearer token(s): any statement (default: $MIGRATION_TOKEN; without
                  one, nothing can change the schema through this bridge)
  --persist DIR   keep the D1 database in DIR (default: in memory, gone on exit)
  --detached      do not exit when stdin closes (for running in the background with </dev/null)
  -h, --help      show this help

When ready, prints one line to stdout: {"url": "http://127.0.0.1:PORT"}.
Stops on SIGTERM, SIGINT, or end of stdin.`;

function fail(message) {
  process.stderr.write(`serve.mjs: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: "string", default: "0" },
      token: { type: "string" },
      "migration-token": { type: "string" },
      persist: { type: "string" },
      detached: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  }));
} catch (e) {
  fail(e.message);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be 0..65535, got ${args.port}`);
const token = args.token ?? process.env.BRIDGE_TOKEN;
if (!token) fail("a token is required: --token TOKEN or BRIDGE_TOKEN in the environment");
const migrationToken = args["migration-token"] ?? process.env.MIGRATION_TOKEN ?? "";

// Same runtime behaviour locally as deployed: take compatibility_date from wrangler.toml.
const toml = readFileSync(join(HERE, "wrangler.toml"), "utf8");
const compatibilityDate = toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m)?.[1];
if (!compatibilityDate) fail("wrangler.toml has no compatibility_date");

const { Miniflare } = await import("miniflare");
const mf = new Miniflare({
  scriptPath: join(HERE, "src/index.js"),
  modules: true,
  // src/index.js imports src/classify.js: every .js file is an ES module, as wrangler bundles them.
  modulesRules: [{ type: "ESModule", include: ["**/*.js"] }],
  compatibilityDate,
  host: "127.0.0.1",
  port,
  d1Databases: { DB: "studiovault-local" },
  d1Persist: args.persist ? resolve(args.persist) : false,
  bindings: { BRIDGE_TOKEN: token, MIGRATION_TOKEN: migrationToken },
});

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    await mf.dispose();
  } catch (e) {
    process.stderr.write(`serve.mjs: dispose failed: ${e?.stack ?? e}\n`);
    code = code || 1;
  }
  process.exit(code);
}
// Miniflare's own SIGINT/SIGTERM hooks kill workerd and exit at once with 130/143; replace them with
// an orderly dispose (workerd finishes in-flight requests and closes the D1 file) and exit code 0.
// Its process "exit" hook stays, as a last resort that still stops workerd.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.removeAllListeners(signal);
  process.on(signal, () => stop(0));
}
if (!args.detached) {
  process.stdin.on("end", () => stop(0));
  process.stdin.on("error", () => stop(0));
  process.stdin.resume();
}

try {
  const url = await mf.ready;
  if (!stopping) process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${url.port}` })}\n`);
} catch (e) {
  process.stderr.write(`serve.mjs: miniflare failed to start: ${e?.stack ?? e}\n`);
  await stop(1);
}
