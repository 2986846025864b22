"""The worker's webhook metrics (served with the pipeline's on WEBHOOKS_WORKER_METRICS_PORT)."""

from prometheus_client import Counter, Gauge, Histogram

from loyalty_shared.pipeline import PIPELINE_REGISTRY

ATTEMPTS = Counter(
    "loyalty_webhook_attempts_total",
    "POSTs to a subscription's endpoint, by outcome (delivered, retry, failed)",
    ["subscription", "outcome"],
    registry=PIPELINE_REGISTRY,
)
FAILURES = Counter(
    "loyalty_webhook_failures_total",
    "Attempts that did not deliver, by kind (status: a non-2xx answer; timeout; "
    "connection; refused: the address is not allowed)",
    ["subscription", "kind"],
    registry=PIPELINE_REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "loyalty_webhook_attempt_seconds",
    "How long one attempt took (until the answer's status, or the failure)",
    ["subscription"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=PIPELINE_REGISTRY,
)
LAG_SECONDS = Gauge(
    "loyalty_webhook_lag_seconds",
    "Age of the subscription's oldest pending delivery (0 when none)",
    ["subscription"],
    registry=PIPELINE_REGISTRY,
)
PENDING = Gauge(
    "loyalty_webhook_pending",
    "Deliveries of the subscription not yet delivered nor failed",
    ["subscription"],
    registry=PIPELINE_REGISTRY,
)
IN_FLIGHT = Gauge(
    "loyalty_webhook_in_flight",
    "Attempts this worker has in flight",
    registry=PIPELINE_REGISTRY,
)
