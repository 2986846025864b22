"""The feedback service's metadata: every table of this service hangs off it."""

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


from feedback.complaints import models as _complaint_models  # noqa: E402,F401
from feedback.followups import models as _followup_models  # noqa: E402,F401
from feedback.members import models as _member_models  # noqa: E402,F401
from feedback.metrics import models as _metric_models  # noqa: E402,F401
from feedback.orders import models as _order_models  # noqa: E402,F401
from feedback.sla import models as _sla_models  # noqa: E402,F401
from feedback.surveys import models as _survey_models  # noqa: E402,F401
