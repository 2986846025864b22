"""Time-ordered identifiers (UUIDv7, RFC 9562) for events and requests.

Event ids are the outbox's unique key and the consumers' inbox key: ids that grow with
time keep those B-tree inserts at the right edge of the index instead of on random
pages, and they sort in the order things happened when read in a log. ``uuid4`` also
cost a system call (``os.urandom``) per id on the checkout path. The 74 random bits come
from ``random`` (reseeded in every forked process); these ids need to be unique, not
unguessable — nothing here is a secret or a capability.
"""

from __future__ import annotations

import random
import time

_RAND_B_MASK = (1 << 62) - 1


def uuid7_int() -> int:
    millis = time.time_ns() // 1_000_000
    rand = random.getrandbits(74)
    return (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | (rand & _RAND_B_MASK)
    )


def uuid7_hex() -> str:
    """32 hex digits, no dashes (request ids)."""
    return f"{uuid7_int():032x}"


def uuid7() -> str:
    """The canonical 8-4-4-4-12 form (event ids)."""
    h = f"{uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
