"""Fixtures for the whole suite: real Postgres and a real broker, started once per run."""

pytest_plugins = [
    "loyalty_shared.testing",
    "points.testing",
    "segmentation.testing",
    "feedback.testing",
    "gateway.testing",
    "webhooks.testing",
]
