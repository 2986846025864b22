"""Writes' ``Idempotency-Key``s: the platform's one store (``loyalty_shared.idempotency``),
keyed by the kind of write, the caller and the key."""

from feedback.db import metadata
from loyalty_shared.idempotency import idempotency_table

IdempotencyKey = idempotency_table(metadata)
