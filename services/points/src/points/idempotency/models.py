"""Stored answers to requests that carried an ``Idempotency-Key`` header: the platform's one
store (``loyalty_shared.idempotency``), keyed by route, caller and key."""

from loyalty_shared.idempotency import idempotency_table
from points.db import metadata

records = idempotency_table(metadata)
