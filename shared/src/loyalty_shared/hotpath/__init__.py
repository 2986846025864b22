"""The hot path's speed layers, in one place: what each does, where, and what it buys.

Every layer can be switched off (``HOTPATH_OFF``, a JSON list) and ``bench/orders.py``
measures the checkout without each one (bench/results/orders.md); a layer that buys less
than 5% goes. They are used by the checkout (``points/checkout/``) and the member status
(``points/members/endpoints.py``):

- ``fast_lane``: ``FastLane`` serves a marked front route straight (pure ASGI), past
  FastAPI's routing and dependency solving, with the same answers.
- ``pool``: ``DriverAutocommit``, a one-statement write on a pooled asyncpg connection with
  no ``BEGIN``/``COMMIT``; ``ShelvingPool``, idle connections checked out without a
  greenlet and kept on a shelf for the next ``DriverAutocommit`` (``connection_shelf``).

Removed in issue #17 (bench/results/orders.md, a quiet machine, 5 rounds): the checkout's
facts cache (throughput without it 1.01 of with it, CPU per request x0.99) and
``KeyedBatches``, the batches of one member's queued checkouts (1.09 without it on the one
hot member, CPU per request x0.86: it cost more than it bought).

The private SQLAlchemy attributes ``pool`` and ``loyalty_shared.db`` use are pinned against
the locked versions (shared/tests/test_private_attributes.py). What each layer bought when
last measured: docs/performance.md, "What each layer buys".
"""
