"""Whether NetworkPolicies let one endpoint open a connection to another (tests/test_k8s.py).

The rules of networking.k8s.io/v1 NetworkPolicy, for one connection:

- a pod that no policy of its namespace selects for a direction is open in that direction;
  once one selects it, only what some rule of those policies allows gets through;
- policyTypes defaults to Ingress, plus Egress when the policy has egress rules;
- a rule allows a connection when one of its ports matches (none listed: any port) and one
  of its peers matches (none listed: anyone);
- a peer with only a podSelector means pods of the policy's own namespace; with a
  namespaceSelector, pods of the namespaces it selects (by their labels, which include
  ``kubernetes.io/metadata.name``), narrowed by its podSelector if it has one;
- an ipBlock matches addresses outside the cluster (whether it matches pod addresses is up
  to the network plugin: this treats it as it never does, the stricter reading);
- a named port is the destination pod's container port of that name.

The connection goes through when the source's egress and the destination's ingress allow it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Object = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace, labels, named container ports) or an address outside the cluster."""

    name: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    address: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions); an empty one selects everything."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: Object, namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.address is None:
            return False
        address = ipaddress.ip_address(other.address)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(c) for c in block.get("except") or [])
    if not other.is_pod:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace or ""}
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def _port_matches(ports: list[Object] | None, port: int, protocol: str, dest: Endpoint) -> bool:
    if not ports:
        return True
    for rule in ports:
        if rule.get("protocol", "TCP") != protocol:
            continue
        if "port" not in rule:
            return True
        value = rule["port"]
        if isinstance(value, str):
            if dest.ports.get(value) == port:
                return True
        else:
            end = rule.get("endPort")
            if int(value) <= port <= int(value if end is None else end):
                return True
    return False


def _policy_types(policy: Object) -> list[str]:
    spec = policy["spec"]
    default = ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
    types: list[str] = spec.get("policyTypes") or default
    return types


def _direction_allows(
    policies: Iterable[Object],
    direction: str,
    subject: Endpoint,
    other: Endpoint,
    port: int,
    protocol: str,
    dest: Endpoint,
) -> bool:
    """Whether ``subject``'s policies for ``direction`` let it talk with ``other``."""
    if not subject.is_pod:
        return True  # outside the cluster: no policy of ours applies
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", "default") == subject.namespace
        and direction in _policy_types(p)
        and selects(p["spec"].get("podSelector"), subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        namespace = policy["metadata"].get("namespace", "default")
        for rule in policy["spec"].get(rules_key) or []:
            if not _port_matches(rule.get("ports"), port, protocol, dest):
                continue
            peers = rule.get(peers_key)
            if not peers or any(_peer_matches(peer, namespace, other) for peer in peers):
                return True
    return False


def allowed(
    policies: list[Object], source: Endpoint, dest: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """Whether ``source`` may open a connection to ``dest`` on ``port``."""
    egress = _direction_allows(policies, "Egress", source, dest, port, protocol, dest)
    ingress = _direction_allows(policies, "Ingress", dest, source, port, protocol, dest)
    return egress and ingress
