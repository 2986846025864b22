"""The checkout (``POST /v1/orders``), in one folder.

- ``endpoints.py``: parse, check the order's time, call ``record_checkout``, answer.
- ``record.py``: ``Checkout`` / ``record_checkout``, the one home of the fallback order
  (read facts -> locked path); each step answers ``Written`` or ``NeedsLock``. (The
  facts cache and the batches of one member's checkouts were removed in issue #17: on a
  quiet machine neither bought 5%; docs/performance.md, "What each layer buys".)
- ``earning.py``: the earning rules (base, tier multiplier, campaigns, upgrade); pure.
- ``plan.py``: what a checkout writes and answers (``OrderPlan``), from the rules; pure.
- ``facts.py``: what it reads about the member first (``OrderMember``), locked or not.
- ``writes.py``: the one write statement (order, ledger credit, events, new tier), which
  composes the ledger's credit from ``points.ledger.statements``.
- ``realtime.py``: the bound on a real-time order's ``occurred_at``.

The history import (``points.orders.batch``, ``POST /v1/orders/batch``) records each order
with the locked path (``record_order_once``).
"""
