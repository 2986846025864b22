"""Bounds on the times a caller gives (``occurred_at``) on the real-time routes.

A time a caller sends decides which local day a check-in earns for, which caps an action
counts against, which lots expire when and which growth window an order counts in. On
check-ins, interactions, ``POST /v1/orders`` and refunds such a time is refused (422,
naming the field) when it is:

- ahead of this service's clock by more than ``client_time_skew_seconds``;
- older than ``client_time_window_hours`` (history goes through ``POST /v1/orders/batch``);
- before the member's enrolment, by more than the same skew (the enrolment was stamped by
  this service's clock, the time by the caller's);
- given at all by a member token on a check-in: the service's clock decides its day.

docs/security.md, "Client-given times".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from loyalty_shared.problems import Unprocessable
from points.settings import PointsSettings

FIELD = "body.occurred_at"


class TimeOutOfBounds(Unprocessable):
    slug = "time-out-of-bounds"
    title = "A client-given time outside what this route accepts"


def out_of_bounds(kind: str, message: str, field: str = FIELD) -> TimeOutOfBounds:
    return TimeOutOfBounds(
        f"{field.removeprefix('body.')} {message}",
        errors=[{"field": field, "message": message, "type": kind}],
    )


def chosen_by_member(field: str = FIELD) -> TimeOutOfBounds:
    return out_of_bounds(
        "not_allowed_for_member",
        "cannot be chosen with a member token: leave it out, the service's clock decides",
        field,
    )


@dataclass(frozen=True)
class TimeBounds:
    window: timedelta
    skew: timedelta

    @classmethod
    def of(cls, settings: PointsSettings) -> TimeBounds:
        return cls(
            window=timedelta(hours=settings.client_time_window_hours),
            skew=timedelta(seconds=settings.client_time_skew_seconds),
        )

    def check_not_ahead(self, at: datetime, now: datetime, field: str = FIELD) -> None:
        if at > now + self.skew:
            raise out_of_bounds(
                "in_the_future",
                f"is ahead of the service's clock by more than "
                f"{self.skew.total_seconds():g} seconds",
                field,
            )

    def check(
        self,
        at: datetime,
        now: datetime,
        *,
        enrolled_at: datetime | None = None,
        history_hint: str = "",
        field: str = FIELD,
    ) -> None:
        """Raise ``TimeOutOfBounds`` unless ``at`` is a time this real-time route accepts."""
        self.check_not_ahead(at, now, field)
        if at < now - self.window:
            hours = self.window.total_seconds() / 3600
            raise out_of_bounds(
                "too_old", f"is older than the {hours:g} hours accepted here{history_hint}", field
            )
        if enrolled_at is not None and at < enrolled_at - self.skew:
            raise out_of_bounds(
                "before_enrolment",
                f"is before the member's enrolment ({enrolled_at.isoformat()})",
                field,
            )

    def may_precede_enrolment(self, at: datetime, now: datetime) -> bool:
        """Whether ``at`` could lie before an enrolment (every enrolment is at or before now):
        a time within the skew of now never does, so it needs no look-up."""
        return at < now - self.skew
