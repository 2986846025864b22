"""The webhooks service's metadata: every table of this service hangs off it."""

from sqlalchemy.orm import DeclarativeBase

from loyalty_shared.db import make_metadata
from loyalty_shared.tables import pipeline_tables

metadata = make_metadata()
pipeline = pipeline_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


from webhooks.deliveries import models as _delivery_models  # noqa: E402,F401
from webhooks.subscriptions import models as _subscription_models  # noqa: E402,F401
