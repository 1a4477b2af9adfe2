"""Standard Webhooks signing, and ``verify`` for receivers of aigc-queue's webhooks.

Each delivery carries ``webhook-id`` (the delivery's id: a retry repeats it, so a receiver can
drop duplicates), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``) under the tenant's ``whsec_`` secret. A
receiver checks one with::

    from shared.webhooks import verify
    event = verify(SECRET, request.get_data(), request.headers)  # raises on a bad signature
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

SECRET_PREFIX = "whsec_"

__all__ = ["WebhookVerificationError", "new_secret", "sign_headers", "verify"]


def new_secret() -> str:
    """Return a new random signing secret (``whsec_`` and 32 bytes in base64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign_headers(secret: str, msg_id: str, body: str, at: datetime) -> dict[str, str]:
    """Return the Standard Webhooks headers of one delivery of ``body``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }


def verify(secret: str, body: bytes | str, headers: Mapping[str, str]) -> Any:
    """Return the event of a delivery whose signature and timestamp (±5 min) check out.

    Raises ``WebhookVerificationError`` otherwise.
    """
    return Webhook(secret).verify(body, dict(headers))
