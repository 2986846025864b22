"""The webhooks service's configuration (environment variables prefixed ``WEBHOOKS_``)."""

from typing import Annotated

from fastapi import Depends, Request
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from loyalty_shared.settings import CommonSettings


class WebhooksSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WEBHOOKS_", extra="ignore")

    service_name: str = "webhooks"
    port: int = 8004

    # -- sending -------------------------------------------------------------------------
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connecting to a receiver (TCP and TLS)"
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="One attempt in all: a receiver slower than this failed"
    )
    max_in_flight: int = Field(
        default=32, ge=1, description="Attempts in flight at once in one worker, in all"
    )
    max_in_flight_per_subscription: int = Field(
        default=4,
        ge=1,
        description="Attempts in flight at once to one subscription: a slow or dead endpoint "
        "holds at most this many of max_in_flight",
    )
    poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the sender looks for due deliveries"
    )
    # -- retries -------------------------------------------------------------------------
    retry_base_seconds: float = Field(
        default=30.0, gt=0, description="Wait after the first failed attempt (then doubled)"
    )
    retry_max_delay_seconds: float = Field(
        default=4 * 3600.0, gt=0, description="The longest wait between two attempts"
    )
    retry_window_seconds: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="How long a delivery is retried before it is marked failed",
    )
    retry_jitter: float = Field(
        default=0.2, ge=0, le=1, description="Each wait is scaled by a random 1 ± this"
    )
    pause_after_failed_deliveries: int = Field(
        default=3,
        ge=1,
        description="Deliveries in a row marked failed (retried for the whole window) that "
        "pause their subscription, with the reason",
    )
    # -- secrets and targets --------------------------------------------------------------
    rotation_overlap_seconds: float = Field(
        default=24 * 3600.0,
        ge=0,
        le=30 * 86400.0,
        description="Default overlap of a secret rotation: the old secret signs too this long",
    )
    allow_private_targets: bool = Field(
        default=False,
        description="Outside dev and test, let URLs reach private and loopback addresses "
        "(a receiver inside the shop's own network); link-local ones are refused always",
    )
    # -- the log -------------------------------------------------------------------------
    delivery_retention_hours: float = Field(
        default=30 * 24.0, gt=0, description="Delivered and failed deliveries kept in the log"
    )
    housekeeping_seconds: float = Field(
        default=15.0, gt=0, description="Lag metrics and pruning of the log, this often"
    )
    lease_grace_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A claimed delivery whose worker died is taken again this long after "
        "its attempt would have timed out",
    )

    @property
    def is_dev(self) -> bool:
        return self.environment in ("dev", "test")

    @property
    def lease_seconds(self) -> float:
        return self.connect_timeout_seconds + self.timeout_seconds + self.lease_grace_seconds


def settings_of(request: Request) -> WebhooksSettings:
    """The app's settings, for an endpoint (``CurrentSettings``)."""
    settings: WebhooksSettings = request.app.state.settings
    return settings


CurrentSettings = Annotated[WebhooksSettings, Depends(settings_of)]
