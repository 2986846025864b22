"""The headers of a webhook request and its signature (docs/webhooks.md has the receiver's
side, in Python and JavaScript).

The signature is ``HMAC-SHA256(secret, "<timestamp>.<body>")`` in hex, under the secret's key
id: ``Loyalty-Webhook-Signature: k2=<hex>``. During a rotation's overlap both secrets sign,
newest first (``k2=<hex>,k1=<hex>``): a receiver that still holds the old secret and one that
holds the new one both find their signature. The timestamp (Unix seconds) is signed too, so a
receiver can refuse an old request played again.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

ID_HEADER = "Loyalty-Webhook-Id"
TYPE_HEADER = "Loyalty-Webhook-Type"
TIMESTAMP_HEADER = "Loyalty-Webhook-Timestamp"
SIGNATURE_HEADER = "Loyalty-Webhook-Signature"
DELIVERY_HEADER = "Loyalty-Webhook-Delivery"
ATTEMPT_HEADER = "Loyalty-Webhook-Attempt"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
USER_AGENT = "loyalty-webhooks/1.0"


@dataclass(frozen=True)
class SigningKey:
    key_id: int
    secret: str

    @property
    def label(self) -> str:
        return f"k{self.key_id}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(keys: Sequence[SigningKey], timestamp: int, body: bytes) -> str:
    return ",".join(f"{k.label}={signature(k.secret, timestamp, body)}" for k in keys)


def request_headers(
    *,
    event_id: str,
    event_type: str,
    delivery_id: int,
    attempt: int,
    keys: Sequence[SigningKey],
    timestamp: int,
    body: bytes,
) -> dict[str, str]:
    return {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        ID_HEADER: event_id,
        TYPE_HEADER: event_type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(keys, timestamp, body),
        DELIVERY_HEADER: str(delivery_id),
        ATTEMPT_HEADER: str(attempt),
    }
