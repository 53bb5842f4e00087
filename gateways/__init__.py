"""Payment gateway accounts and APIs: each org's connected accounts (encrypted at rest), the cache the
ingress reads them through, and the gateways' list APIs the reconciler pages (port + httpx adapters)."""
