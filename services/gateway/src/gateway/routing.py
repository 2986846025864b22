"""Which service owns which public path: one table, longest prefix wins."""

ROUTES: dict[str, str] = {
    "/v1/members": "points",
    "/v1/orders": "points",
    "/v1/redemptions": "points",
    "/v1/interactions": "points",
    "/v1/tiers": "points",
    "/v1/rewards": "points",
    "/v1/campaigns": "points",
    "/v1/earning-rules": "points",
    "/v1/ops/ledger": "points",
    "/v1/profiles": "segmentation",
    "/v1/segments": "segmentation",
    "/v1/contacts": "segmentation",
    "/v1/tags": "segmentation",
    "/v1/analytics": "segmentation",
    "/v1/strategy-matrix": "segmentation",
    "/v1/jobs": "segmentation",
    "/v1/contact-policy": "segmentation",
    "/v1/complaints": "feedback",
    "/v1/follow-ups": "feedback",
    "/v1/surveys": "feedback",
    "/v1/feedback": "feedback",
    "/v1/ahp": "feedback",
    "/v1/sla": "feedback",
    "/v1/webhooks": "webhooks",
}

# The prefixes by their number of segments, most first: a path's owner is the first of its
# own leading segments (3, then 2, ...) found in the table (longest prefix wins), one dict
# lookup each instead of a scan of the table.
_DEPTHS = sorted({prefix.count("/") for prefix in ROUTES}, reverse=True)

# A member's things another service holds: /v1/members/{member_id}/<name> goes to that
# service, not to points (the owner of /v1/members).
MEMBER_SUBRESOURCES: dict[str, str] = {
    "complaints": "feedback",
    "surveys": "feedback",
}

SERVICES = ("points", "segmentation", "feedback", "webhooks")

# Routes the gateway answers itself by asking several services (never forwarded as they are).
COMPOSED: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/v1/members/{member_id}/status"),
        ("GET", "/v1/members/{member_id}/export"),
        ("GET", "/v1/ops/pipeline"),
        ("GET", "/v1/ops/dead-letters"),
        ("POST", "/v1/ops/dead-letters/replay"),
    }
)

# One dead letter or parked row: its ref names the service that holds it (points.dlq.7).
# (The lists over every service, /v1/ops/pipeline and /v1/ops/dead-letters, are the
# gateway's own routes: gateway.ops.)
_DEAD_LETTER_ITEM = "/v1/ops/dead-letters/"


def owner_of(path: str) -> str | None:
    if path.startswith(_DEAD_LETTER_ITEM):
        owner = path.removeprefix(_DEAD_LETTER_ITEM).split(".", 1)[0]
        return owner if owner in SERVICES else None
    if path.startswith("/v1/members/"):
        parts = path.split("/")  # "", "v1", "members", member id, sub-resource
        if len(parts) == 5 and parts[3] and parts[4] in MEMBER_SUBRESOURCES:
            return MEMBER_SUBRESOURCES[parts[4]]
    parts = path.split("/", _DEPTHS[0] + 1)  # "", "v1", "ops", "ledger", "verify/..."
    for depth in _DEPTHS:
        # "/v1/ops/ledger/verify": "/v1/ops/ledger" (depth 3), then "/v1/ops" (depth 2)
        if len(parts) > depth:
            service = ROUTES.get("/".join(parts[: depth + 1]))
            if service is not None:
                return service
    return None
