"""The checkout (``POST /v1/orders``), in one folder.

- ``endpoints.py``: parse, check the order's time, call ``record_checkout``, answer.
- ``record.py``: ``Checkout`` / ``record_checkout``, the one home of the fallback order
  (remembered facts -> read facts -> locked path -> batch -> one by one); each step
  answers ``Written`` or ``NeedsLock``.
- ``earning.py``: the earning rules (base, tier multiplier, campaigns, upgrade); pure.
- ``plan.py``: what a checkout writes and answers (``OrderPlan``), from the rules; pure.
- ``facts.py``: what it reads about the member first (``OrderMember``), locked or not.
- ``writes.py``: the one write statement (order, ledger credit, events, new tier), which
  composes the ledger's credit from ``points.ledger.statements``.
- ``facts_cache.py``: what a member's last checkout left, for the next one.
- ``realtime.py``: the bound on a real-time order's ``occurred_at``.

The history import (``points.orders.batch``, ``POST /v1/orders/batch``) records each order
with the locked path (``record_order_once``).
"""
