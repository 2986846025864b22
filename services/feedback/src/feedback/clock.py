"""The service's notion of "now": real time, or a controllable clock in tests."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

ClockFn = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def get_now(request: Request) -> datetime:
    clock: ClockFn = request.app.state.clock
    return clock()


Now = Annotated[datetime, Depends(get_now)]
