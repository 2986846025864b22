"""The hot path's speed layers, in one place: what each does, where, and what it buys.

Every layer can be switched off (``HOTPATH_OFF``, a JSON list; the facts cache with
``POINTS_ORDER_FACTS_MEMBERS=0``) and ``bench/orders.py`` measures the checkout without each
one (bench/results/orders-layers.md); a layer that buys less than 5% goes. They are used by
the checkout (``points/checkout/``) and the member status (``points/members/endpoints.py``):

- ``fast_lane``: ``FastLane`` serves a marked front route straight (pure ASGI), past
  FastAPI's routing and dependency solving, with the same answers.
- ``keyed_batches``: ``KeyedBatches``, one member's checkouts that arrive while one is
  being recorded are recorded together (one transaction, one ``COMMIT``).
- ``pool``: ``DriverAutocommit``, a one-statement write on a pooled asyncpg connection with
  no ``BEGIN``/``COMMIT`` (given back to the pool without a greenlet when that awaits
  nothing).
- the facts cache lives with the checkout (``points.checkout.facts_cache``).

The private SQLAlchemy attributes ``pool`` and ``loyalty_shared.db`` use are pinned against
the locked versions (shared/tests/test_private_attributes.py). What each layer bought when
last measured (each at least 5%): docs/performance.md, "What each layer buys".
"""
