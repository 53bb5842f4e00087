#!/usr/bin/env node
// Test harness: runs the relay (src/index.js) under miniflare as the consumer of a local queue, with a
// "feeder" Worker that puts messages on that queue, and a sink Worker that prints what reaches the
// REFUSED queue. Used by tests/test_media_relay.py; needs miniflare from ../d1-bridge/node_modules.
//
//   node test/harness.mjs <ingress url> <whsec secrets>
//
// Prints {"ready": true} when started. Then reads JSON lines on stdin, each an array of R2 message
// bodies to enqueue, answering {"sent": n}. Prints {"refused": {...}} for each message the relay sent to
// REFUSED. Exits when stdin closes.

import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const { Miniflare, Log, LogLevel } = await import(join(HERE, "..", "..", "d1-bridge", "node_modules", "miniflare",
  "dist", "src", "index.js"));

const [ingressUrl, secrets] = process.argv.slice(2);
const compatibilityDate = "2026-04-01";
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const mf = new Miniflare({
  log: new Log(LogLevel.WARN),
  cf: false,  // no fetch of Request.cf from the internet
  workers: [
    {
      name: "feeder",
      modules: true,
      compatibilityDate,
      script: `export default { async fetch(request, env) {
        const bodies = await request.json();
        await env.EVENTS.sendBatch(bodies.map((body) => ({ body })));
        return new Response(String(bodies.length));
      } }`,
      queueProducers: { EVENTS: "r2-events" },
    },
    {
      name: "relay",
      modules: true,
      compatibilityDate,
      scriptPath: join(HERE, "..", "src", "index.js"),
      bindings: { INGRESS_URL: ingressUrl, WEBHOOK_SECRETS: secrets, RETRY_BASE_S: "1", TIMEOUT_MS: "10000" },
      queueConsumers: { "r2-events": { maxBatchSize: 10, maxBatchTimeout: 0.2, maxRetries: 1 } },
      queueProducers: { REFUSED: "r2-refused" },
    },
    {
      name: "refused-sink",
      modules: true,
      compatibilityDate,
      script: `export default { async queue(batch, env) {
        for (const m of batch.messages) { await env.OUT.fetch("http://harness/refused", { method: "POST",
          body: JSON.stringify(m.body) }); m.ack(); }
      } }`,
      queueConsumers: { "r2-refused": { maxBatchSize: 10, maxBatchTimeout: 0.2 } },
      serviceBindings: { OUT: async (request) => { say({ refused: await request.json() }); return new Response("ok"); } },
    },
  ],
});
await mf.ready;
say({ ready: true });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const response = await mf.dispatchFetch("http://feeder/", { method: "POST", body: line });
  say({ sent: Number(await response.text()) });
}
await mf.dispose();
