"""Who may call what: one table, method + path template -> allowed scopes.

Read this file to know the rules. ``admin`` may call every route in the table.
``member_any`` lets any member token through (the tier ladder);
``member_self`` lets a member token through only for its own member: the
``{member_id}`` in the path, a ``member_id`` in the query and a top-level
``member_id`` in the JSON body must all be the token's member (a route with
none of them is denied to members). ``member_owned`` lets any member token reach
a route keyed by something else (a redemption id): any member id the request
names must still be its own, and the service answers only for the member's own
resource (``X-Member-Id``), with the gateway's 403 otherwise. A route that is
not in the table is denied (403) to everyone, and a test fails when a service
exposes a route the table does not cover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.settings import CallerScope

SF, OPS, ADM = "storefront", "ops", "admin"


@dataclass(frozen=True)
class Rule:
    method: str
    template: str
    scopes: frozenset[str]
    member_self: bool = False
    member_any: bool = False
    member_owned: bool = False  # the service checks the resource is the member's (X-Member-Id)
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)
    literal_segments: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "regex", re.compile(f"^{pattern}$"))
        literal = sum(1 for s in self.template.split("/") if s and not s.startswith("{"))
        object.__setattr__(self, "literal_segments", literal)

    def allows(self, scope: CallerScope) -> bool:
        if scope == "admin":
            return True
        if scope == "member":
            return self.member_self or self.member_any or self.member_owned
        return scope in self.scopes

    @property
    def needs(self) -> str:
        """Who may call it, for people (the merged OpenAPI shows it)."""
        names = sorted(self.scopes | {ADM})
        if self.member_self:
            names.append("member (self)")
        if self.member_any:
            names.append("member")
        if self.member_owned:
            names.append("member (own)")
        return ", ".join(names)


def _r(
    method: str,
    template: str,
    *scopes: str,
    member_self: bool = False,
    member_any: bool = False,
    member_owned: bool = False,
) -> Rule:
    return Rule(method, template, frozenset(scopes), member_self, member_any, member_owned)


ANYONE = (SF, OPS, ADM)

POLICY: tuple[Rule, ...] = (
    # -- gateway ---------------------------------------------------------------
    _r("POST", "/v1/auth/member-tokens", SF, ADM),
    _r("GET", "/v1/members/{member_id}/status", SF, OPS, member_self=True),
    # -- points ----------------------------------------------------------------
    _r("POST", "/v1/members", SF, OPS),
    _r("GET", "/v1/members/{member_id}", SF, OPS, member_self=True),
    _r("DELETE", "/v1/members/{member_id}", ADM),
    _r("GET", "/v1/members/{member_id}/ledger", SF, OPS, member_self=True),
    _r("GET", "/v1/members/{member_id}/export", ADM, member_self=True),
    _r("POST", "/v1/members/{member_id}/redemptions", SF, member_self=True),
    _r("POST", "/v1/members/{member_id}/adjustments", OPS, ADM),
    _r("POST", "/v1/members/{member_id}/check-ins", SF, member_self=True),
    _r("GET", "/v1/members/{member_id}/complaints", OPS, member_self=True),  # feedback
    _r("GET", "/v1/members/{member_id}/surveys", OPS, member_self=True),  # feedback
    _r("POST", "/v1/orders", SF),
    _r("POST", "/v1/orders/batch", SF, ADM),
    _r("POST", "/v1/orders/{order_id}/refunds", SF),
    # points checks that a member token cancels only its own redemption (403 otherwise)
    _r("POST", "/v1/redemptions/{redemption_id}/cancel", SF, OPS, member_owned=True),
    _r("POST", "/v1/interactions", SF),
    _r("GET", "/v1/tiers", *ANYONE, member_any=True),
    _r("PUT", "/v1/tiers", OPS),
    _r("GET", "/v1/rewards", OPS, SF, member_any=True),  # a member: active rewards only
    _r("POST", "/v1/rewards", OPS),
    _r("GET", "/v1/rewards/{reward_id}", OPS, SF, member_any=True),
    _r("PUT", "/v1/rewards/{reward_id}", OPS),
    _r("PATCH", "/v1/rewards/{reward_id}", OPS),
    _r("GET", "/v1/campaigns", OPS, SF),
    _r("POST", "/v1/campaigns", OPS),
    _r("POST", "/v1/campaigns/preview", OPS),
    _r("GET", "/v1/campaigns/{campaign_id}", OPS, SF),
    _r("PUT", "/v1/campaigns/{campaign_id}", OPS),
    _r("PATCH", "/v1/campaigns/{campaign_id}", OPS),
    _r("GET", "/v1/earning-rules", OPS, SF),
    _r("PUT", "/v1/earning-rules", OPS),
    _r("GET", "/v1/earning-rules/{action}", OPS, SF),
    _r("PUT", "/v1/earning-rules/{action}", OPS),
    _r("GET", "/v1/ops/ledger/verify", ADM),  # reconciliation: every balance against its ledger
    # -- segmentation ------------------------------------------------------------
    _r("GET", "/v1/profiles", OPS),
    _r("GET", "/v1/profiles/{member_id}", OPS, SF),
    _r("POST", "/v1/profiles/{member_id}/tags", OPS),
    _r("GET", "/v1/segments", OPS),
    _r("POST", "/v1/segments", OPS),
    _r("GET", "/v1/segments/{segment_id}", OPS),
    _r("GET", "/v1/segments/{segment_id}/members", OPS),
    _r("GET", "/v1/segments/{segment_id}/explain/{member_id}", OPS),
    _r("PATCH", "/v1/segments/{segment_id}", OPS),
    _r("PUT", "/v1/segments/{segment_id}", OPS),
    _r("POST", "/v1/segments/{segment_id}/archive", OPS),
    _r("GET", "/v1/segments/{segment_id}/definitions", OPS),
    _r("GET", "/v1/segments/{segment_id}/members.csv", OPS),  # campaign tools
    _r("POST", "/v1/contacts/check", OPS, SF),
    _r("POST", "/v1/contacts", OPS, SF),
    _r("GET", "/v1/tags", OPS),
    _r("POST", "/v1/tags", OPS),
    _r("GET", "/v1/tags/{name}", OPS),
    _r("PATCH", "/v1/tags/{name}", OPS),
    _r("PUT", "/v1/tags/{name}", OPS),
    _r("POST", "/v1/tags/{name}/archive", OPS),
    _r("GET", "/v1/tags/{name}/definitions", OPS),
    _r("GET", "/v1/analytics/kpis", OPS),
    _r("GET", "/v1/analytics/distribution", OPS),
    _r("POST", "/v1/analytics/recompute", OPS),
    _r("GET", "/v1/analytics/clv-model", OPS),
    _r("GET", "/v1/strategy-matrix", OPS),
    _r("PUT", "/v1/strategy-matrix", OPS),
    _r("GET", "/v1/jobs/{job_id}", OPS),
    _r("GET", "/v1/analytics/loyalty-weights", OPS),
    _r("PUT", "/v1/analytics/loyalty-weights", OPS),
    _r("GET", "/v1/contact-policy", OPS),
    _r("PUT", "/v1/contact-policy", OPS),
    _r("GET", "/v1/profiles/{member_id}/contact-preferences", OPS, SF, member_self=True),
    _r("PUT", "/v1/profiles/{member_id}/contact-preferences", OPS, SF, member_self=True),
    _r("GET", "/v1/profiles/{member_id}/export", ADM, member_self=True),
    # -- feedback ----------------------------------------------------------------
    _r("POST", "/v1/complaints", SF, OPS, member_self=True),
    _r("GET", "/v1/complaints", OPS),
    _r("GET", "/v1/complaints/{complaint_id}", OPS),
    _r("POST", "/v1/complaints/{complaint_id}/actions", OPS),
    _r("GET", "/v1/follow-ups", OPS),
    _r("GET", "/v1/follow-ups/{follow_up_id}", OPS),
    _r("POST", "/v1/follow-ups/{follow_up_id}/outcome", OPS),
    _r("POST", "/v1/follow-ups/{follow_up_id}/assign", OPS),
    _r("GET", "/v1/sla/policies", OPS),
    _r("PUT", "/v1/sla/policies/{policy_id}", OPS),
    _r("GET", "/v1/sla/calendars", OPS),
    _r("PUT", "/v1/sla/calendars/{calendar_id}", OPS),
    _r("GET", "/v1/feedback/csi-hierarchy", OPS),
    _r("PUT", "/v1/feedback/csi-hierarchy", OPS),
    _r("GET", "/v1/feedback/members/{member_id}", OPS),
    _r("GET", "/v1/feedback/members/{member_id}/export", ADM, member_self=True),
    _r("GET", "/v1/surveys", OPS),
    _r("POST", "/v1/surveys", OPS),
    _r("GET", "/v1/surveys/{survey_id}", OPS, SF),
    _r("POST", "/v1/surveys/{survey_id}/responses", SF, member_self=True),
    _r("POST", "/v1/surveys/{survey_id}/invitations", OPS),
    _r("GET", "/v1/feedback/metrics", OPS),
    _r("POST", "/v1/ahp/weights", OPS),
    # -- webhooks (docs/webhooks.md): admin makes, changes and deletes them (members' events
    # leave the platform through them); ops run them day to day --------------------------
    _r("GET", "/v1/webhooks/event-types", OPS),
    _r("GET", "/v1/webhooks", OPS),
    _r("POST", "/v1/webhooks", ADM),
    _r("GET", "/v1/webhooks/{subscription_id}", OPS),
    _r("PATCH", "/v1/webhooks/{subscription_id}", ADM),
    _r("DELETE", "/v1/webhooks/{subscription_id}", ADM),
    _r("POST", "/v1/webhooks/{subscription_id}/pause", OPS),
    _r("POST", "/v1/webhooks/{subscription_id}/resume", OPS),
    _r("POST", "/v1/webhooks/{subscription_id}/rotate-secret", ADM),
    _r("POST", "/v1/webhooks/{subscription_id}/test", OPS),
    _r("GET", "/v1/webhooks/{subscription_id}/deliveries", OPS),
    _r("GET", "/v1/webhooks/{subscription_id}/deliveries/{delivery_id}", OPS),
    _r("POST", "/v1/webhooks/{subscription_id}/deliveries/{delivery_id}/retry", OPS),
    # -- pipeline operations (every service; the gateway fans out) -----------------------
    _r("GET", "/v1/ops/pipeline", OPS),
    _r("GET", "/v1/ops/dead-letters", ADM),
    _r("POST", "/v1/ops/dead-letters/replay", ADM),
    _r("GET", "/v1/ops/dead-letters/{ref}", ADM),
    _r("POST", "/v1/ops/dead-letters/{ref}/replay", ADM),
    _r("POST", "/v1/ops/dead-letters/{ref}/discard", ADM),
)

# More literal segments first: /v1/orders/batch beats /v1/orders/{order_id}.
_ORDERED = sorted(POLICY, key=lambda r: (-r.literal_segments, r.template))


def _resource(path: str) -> str:
    """``/v1/members/...`` -> ``members``: every template names its resource literally."""
    parts = path.split("/", 3)
    return parts[2] if len(parts) > 2 else ""


# Rules by (method, resource), each list in _ORDERED order: a request looks at a handful.
_INDEX: dict[tuple[str, str], list[Rule]] = {}
for _rule in _ORDERED:
    assert not _resource(_rule.template).startswith("{"), _rule
    _INDEX.setdefault((_rule.method, _resource(_rule.template)), []).append(_rule)


@dataclass(frozen=True, slots=True)
class Match:
    rule: Rule
    params: dict[str, str]


def match(method: str, path: str) -> Match | None:
    method = "GET" if method == "HEAD" else method
    for rule in _INDEX.get((method, _resource(path)), ()):
        found = rule.regex.match(path)
        if found:
            return Match(rule, found.groupdict())
    return None


def methods_for(path: str) -> list[str]:
    """The methods the table lists for this path (for a 405's Allow header)."""
    resource = _resource(path)
    methods = {
        method
        for (method, res), rules in _INDEX.items()
        if res == resource and any(rule.regex.match(path) for rule in rules)
    }
    return sorted(methods)


def normalise(template: str) -> str:
    """``/v1/segments/{id}`` and ``/v1/segments/{segment_id}`` are the same route."""
    return re.sub(r"\{[^}]+\}", "{}", template)


def covers(method: str, template: str) -> bool:
    wanted = (method.upper(), normalise(template))
    return any((r.method, normalise(r.template)) == wanted for r in POLICY)
