"""The points service's metadata: every table of this service hangs off it; and the
``Idempotency-Key`` guards over its table (``loyalty_shared.idempotency``)."""

from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import DeclarativeBase

from loyalty_shared.db import make_metadata
from loyalty_shared.idempotency import IdempotencyGuard, KeyGuards, idempotency_table
from loyalty_shared.tables import pipeline_tables

metadata = make_metadata()
pipeline = pipeline_tables(metadata)
outbox = pipeline.outbox
inbox = pipeline.inbox
idempotency_keys = idempotency_table(metadata)
idempotency_guards = KeyGuards(idempotency_keys)

# write endpoints' Idempotency-Key: optional, or required where a retry could spend twice
Idempotency = Annotated[IdempotencyGuard, Depends(idempotency_guards.optional)]
RequiredIdempotency = Annotated[IdempotencyGuard, Depends(idempotency_guards.required)]


class Base(DeclarativeBase):
    metadata = metadata


# import the feature models so that they register on ``metadata``
from points.actions import models as _action_models  # noqa: E402,F401
from points.campaigns import models as _campaign_models  # noqa: E402,F401
from points.ledger import models as _ledger_models  # noqa: E402,F401
from points.members import models as _member_models  # noqa: E402,F401
from points.orders import models as _order_models  # noqa: E402,F401
from points.redemptions import models as _redemption_models  # noqa: E402,F401
from points.refunds import models as _refund_models  # noqa: E402,F401
from points.rules import models as _earning_rule_models  # noqa: E402,F401
from points.tiers import models as _tier_models  # noqa: E402,F401
