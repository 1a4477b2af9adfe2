"""Tenants: who owns what, their API keys and scopes, caps, fair shares and idempotency."""
