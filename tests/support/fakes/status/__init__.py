"""Realistic, correctly signed delivery-status webhooks from our three notification providers.

Standalone on purpose (stdlib + httpx, no project imports) so a test can post exactly what the
provider would post to our ingress:

- `whatsapp`: Meta WhatsApp Cloud API `statuses` webhooks, `X-Hub-Signature-256`, and the GET
  verification handshake query;
- `msg91`: MSG91 SMS delivery reports (DLR), which are not signed (authenticate by a secret in the URL);
- `resend`: Resend e-mail events, signed by Svix (the Standard Webhooks scheme).

`python -m tests.support.fakes.status.selftest` checks every signer against an independent
implementation. The research behind the shapes is in /work/notes/notify.md.
"""
