"""The segmentation service's metadata: every table of this service hangs off it."""

from sqlalchemy.orm import DeclarativeBase

from loyalty_shared.db import make_metadata
from loyalty_shared.idempotency import idempotency_table
from loyalty_shared.tables import pipeline_tables

metadata = make_metadata()
pipeline = pipeline_tables(metadata)
outbox = pipeline.outbox
inbox = pipeline.inbox
idempotency_keys = idempotency_table(metadata)


class Base(DeclarativeBase):
    metadata = metadata


from segmentation.analytics import models as _analytics_models  # noqa: E402,F401
from segmentation.contacts import models as _contact_models  # noqa: E402,F401
from segmentation.profiles import models as _profile_models  # noqa: E402,F401
from segmentation.segments import models as _segment_models  # noqa: E402,F401
from segmentation.strategies import models as _strategy_models  # noqa: E402,F401
