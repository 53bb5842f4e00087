// Shared by run.mjs and serve.mjs: bundles the test Worker and starts ONE Miniflare instance running two
// Workers on the SAME D1 database: the test app Worker (test-worker/, Drizzle on D1, using this package)
// and the pipeline's D1 bridge (../d1-bridge/src/index.js), each on its own local port.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";
import { Miniflare } from "miniflare";

import { applyMigrations } from "./migrations.mjs";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = resolve(ROOT, "..");
export const MIGRATIONS_DIR = join(REPO, "migrations");
export const BRIDGE_SCRIPT = join(REPO, "d1-bridge", "src", "index.js");
export const DATABASE_ID = "studiovault-local"; // the id d1-bridge/serve.mjs uses too
const WORKER_OUT = join(ROOT, "test-worker", "dist", "worker.js");

/** The bridge's compatibility_date (d1-bridge/wrangler.toml): both Workers run on the same one. */
export function compatibilityDate() {
  const toml = readFileSync(join(REPO, "d1-bridge", "wrangler.toml"), "utf8");
  const date = toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m)?.[1];
  if (!date) throw new Error("d1-bridge/wrangler.toml has no compatibility_date");
  return date;
}

/**
 * Bundles test-worker/src into one ES module. By default it imports the BUILT package (dist/), as an app
 * would; `fromSource` bundles src/ instead (esbuild strips the types), so a harness started by the Python
 * tests never runs a stale dist/.
 */
export async function buildWorker({ fromSource = false } = {}) {
  const entry = fromSource ? join(ROOT, "src", "index.ts") : join(ROOT, "dist", "index.js");
  if (!existsSync(entry)) {
    throw new Error("dist/ is missing: run `npm run build` first (npm test does)");
  }
  await esbuild.build({
    entryPoints: [join(ROOT, "test-worker", "src", "index.ts")],
    outfile: WORKER_OUT,
    bundle: true,
    format: "esm",
    platform: "browser",
    conditions: ["workerd", "worker", "browser"],
    target: "es2022",
    // The package imports itself by name, as the app does; resolve that to this checkout's dist/.
    alias: { "@studiovault/outbox": entry },
    logLevel: "error",
  });
  return WORKER_OUT;
}

/**
 * Starts Miniflare with both Workers sharing one D1 database, applies the migrations (unless
 * `migrate: false`; `fromSource`: see buildWorker), and returns `{ mf, appUrl, bridgeUrl, db, applied }`. `port`/`bridgePort` 0: free ports.
 */
export async function startServers({
  port = 0,
  bridgePort = 0,
  token,
  migrationToken = "",
  persist,
  migrate = true,
  host = "127.0.0.1",
  fromSource = false,
}) {
  if (!token) throw new Error("a bridge token is required");
  const script = await buildWorker({ fromSource });
  const compat = compatibilityDate();
  const d1Databases = { DB: DATABASE_ID };
  const mf = new Miniflare({
    host,
    port,
    d1Persist: persist ? resolve(persist) : false,
    workers: [
      // The first Worker is the one served on `port`.
      // modulesRoot: module names are paths relative to it, and may not climb out of it with "..".
      { name: "app", modules: true, modulesRoot: dirname(script), scriptPath: script, compatibilityDate: compat, d1Databases },
      {
        name: "bridge",
        modules: true,
        modulesRoot: dirname(BRIDGE_SCRIPT),
        scriptPath: BRIDGE_SCRIPT,
        // src/index.js imports src/classify.js: every .js file there is an ES module (as d1-bridge/serve.mjs).
        modulesRules: [{ type: "ESModule", include: ["**/*.js"] }],
        compatibilityDate: compat,
        d1Databases,
        bindings: { BRIDGE_TOKEN: token, MIGRATION_TOKEN: migrationToken },
        unsafeDirectSockets: [{ host, port: bridgePort }],
      },
    ],
  });
  try {
    const appUrl = await mf.ready;
    const bridgeUrl = await mf.unsafeGetDirectURL("bridge");
    const db = await mf.getD1Database("DB", "app");
    const applied = migrate ? await applyMigrations(db, MIGRATIONS_DIR) : [];
    return { mf, appUrl: origin(appUrl, host), bridgeUrl: origin(bridgeUrl, host), db, applied };
  } catch (error) {
    await mf.dispose().catch(() => {});
    throw error;
  }
}

function origin(url, host) {
  return `http://${host}:${url.port}`;
}
