// StudioVault R2 relay: a Cloudflare Queue consumer that forwards each R2 event notification to the
// pipeline's ingress (POST /webhooks/r2), signed with Standard Webhooks (https://www.standardwebhooks.com).
//
//   R2 bucket ─(event notification rule)─► Queue ─► this Worker ─(signed POST)─► ingress ─► inbox ─► worker
//
// Per message: 2xx → ack. 400/413/422 (the ingress refused the message itself: not an R2 message, a key
// outside the layout, a bucket we do not serve) → sent, with the ingress's reason, to the REFUSED queue
// (studiovault-r2-refused) and acked, when that binding exists. Anything else (401 during a secret rotation, 5xx, timeouts,
// network errors) → retry with exponential backoff; after max_retries the queue moves it to its own
// dead_letter_queue. The ingress dedupes on the notification's natural key, so redelivery is harmless.

const PERMANENT = new Set([400, 413, 422]);
const encoder = new TextEncoder();

function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function bytesToBase64(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** `whsec_<base64>` secrets, space- or comma-separated: the first is current, the rest are being rotated out. */
export function parseSecrets(value) {
  const secrets = String(value ?? "").split(/[\s,]+/).filter(Boolean);
  if (secrets.length === 0) throw new Error("WEBHOOK_SECRETS is not set");
  return secrets.map((s) => base64ToBytes(s.replace(/^whsec_/, "")));
}

/** `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one entry per secret, space-separated. */
export async function sign(keys, id, timestamp, body) {
  const data = encoder.encode(`${id}.${timestamp}.${body}`);
  const entries = [];
  for (const raw of keys) {
    const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    entries.push("v1," + bytesToBase64(new Uint8Array(await crypto.subtle.sign("HMAC", key, data))));
  }
  return entries.join(" ");
}

/** Exponential backoff for a retried message: 30 s, 60 s, 120 s, ... capped at 12 h (the queue's maximum). */
export function retryDelay(attempts, base = 30) {
  return Math.min(base * 2 ** Math.max(attempts - 1, 0), 43200);
}

export async function forward(message, env) {
  const body = JSON.stringify(message.body);
  const timestamp = Math.floor(Date.now() / 1000);
  const id = `msg_${message.id}`;
  return fetch(env.INGRESS_URL, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": await sign(parseSecrets(env.WEBHOOK_SECRETS), id, timestamp, body),
    },
    body,
    signal: AbortSignal.timeout(Number(env.TIMEOUT_MS ?? 10000)),
  });
}

async function relay(message, env) {
  const base = Number(env.RETRY_BASE_S ?? 30);
  try {
    const response = await forward(message, env);
    if (response.ok) {
      message.ack();
      return;
    }
    const detail = (await response.text()).slice(0, 2000);
    if (PERMANENT.has(response.status) && env.REFUSED) {
      await env.REFUSED.send({ refused: true, status: response.status, detail, message: message.body });
      console.warn(`r2-relay: refused ${response.status} ${detail}`);
      message.ack();
      return;
    }
    console.warn(`r2-relay: ingress answered ${response.status}; retry ${message.attempts}`);
  } catch (error) {
    console.warn(`r2-relay: forward failed (${error}); retry ${message.attempts}`);
  }
  message.retry({ delaySeconds: retryDelay(message.attempts, base) });
}

export default {
  async queue(batch, env) {
    await Promise.all(batch.messages.map((message) => relay(message, env)));
  },
};
