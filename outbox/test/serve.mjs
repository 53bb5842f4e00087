#!/usr/bin/env node
// Serves the test app Worker (test-worker/: Drizzle on D1, publishing events through this package) AND the
// pipeline's D1 bridge Worker (../d1-bridge/src/index.js) from ONE Miniflare instance, on the SAME D1
// database, each on its own local port: the app writes events in its batches, the Python pipeline reads
// them through the bridge. Prints ONE JSON line on stdout when ready:
//
//   {"app_url": "http://127.0.0.1:P1", "bridge_url": "http://127.0.0.1:P2", "url": "http://127.0.0.1:P2"}
//
// ("url" is the bridge, as in d1-bridge/serve.mjs, so code that reads that line works unchanged.)
// Serves until SIGTERM/SIGINT or until its stdin closes (so a crashed parent never leaks it).

import { parseArgs } from "node:util";

import { startServers } from "./harness.mjs";

const USAGE = `usage: node test/serve.mjs [--port N] [--bridge-port N] [--token TOKEN] [--persist DIR]
                          [--skip-migrations] [--detached]

Serves the test app Worker and the D1 bridge Worker, sharing one D1 database, under miniflare.

  --port N           the app Worker's port; 0 (the default) picks a free one
  --bridge-port N    the bridge Worker's port; 0 (the default) picks a free one
  --token TOKEN      bearer token the bridge accepts (default: $BRIDGE_TOKEN; one of them is required)
  --persist DIR      keep the D1 database in DIR (default: in memory, gone on exit)
  --skip-migrations  do not apply ../migrations (they are applied by default, recorded in d1_migrations
                     as wrangler and store/migrate.py record them, so the Python migrator skips them)
  --detached         do not exit when stdin closes (for running in the background with </dev/null)
  -h, --help         show this help

When ready, prints one line to stdout: {"app_url": ..., "bridge_url": ..., "url": <bridge_url>}.
Stops on SIGTERM, SIGINT, or end of stdin. The app Worker is bundled from src/ (no build needed).`;

function fail(message) {
  process.stderr.write(`serve.mjs: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: "string", default: "0" },
      "bridge-port": { type: "string", default: "0" },
      token: { type: "string" },
      persist: { type: "string" },
      "skip-migrations": { type: "boolean", default: false },
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
const bridgePort = Number(args["bridge-port"]);
for (const [name, value] of [["--port", port], ["--bridge-port", bridgePort]]) {
  if (!Number.isInteger(value) || value < 0 || value > 65535) fail(`${name} must be 0..65535`);
}
const token = args.token ?? process.env.BRIDGE_TOKEN;
if (!token) fail("a token is required: --token TOKEN or BRIDGE_TOKEN in the environment");

let servers;
let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    await servers?.mf.dispose();
  } catch (e) {
    process.stderr.write(`serve.mjs: dispose failed: ${e?.stack ?? e}\n`);
    code = code || 1;
  }
  process.exit(code);
}
// Miniflare's own SIGINT/SIGTERM hooks kill workerd and exit at once; replace them with an orderly
// dispose (as d1-bridge/serve.mjs does). Its process "exit" hook stays as a last resort.
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
  servers = await startServers({
    port,
    bridgePort,
    token,
    migrationToken: process.env.MIGRATION_TOKEN ?? "", // the bridge's migration token: schema changes
    persist: args.persist,
    migrate: !args["skip-migrations"],
    fromSource: true, // never a stale dist/: the app Worker is bundled from src/ at each start
  });
  // Signals may have arrived while Miniflare was starting (it installs its own hooks): take them back.
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.removeAllListeners(signal);
    process.on(signal, () => stop(0));
  }
  if (servers.applied.length) process.stderr.write(`serve.mjs: applied ${servers.applied.join(", ")}\n`);
  if (stopping) {
    await servers.mf.dispose();
  } else {
    const line = { app_url: servers.appUrl, bridge_url: servers.bridgeUrl, url: servers.bridgeUrl };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
} catch (e) {
  process.stderr.write(`serve.mjs: failed to start: ${e?.stack ?? e}\n`);
  await stop(1);
}
