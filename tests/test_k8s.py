"""deploy/k8s checked against the code, without a cluster.

The base and both overlays are rendered (tests/k8s_kustomize.py: the kustomize subset the
manifests use; where kubectl or kustomize is installed its render must be the same) and
every object is read into its model of the Kubernetes Python client. Then
(tests/k8s_manifests.py): the workloads, their probes, resources and security context,
images and commands (deploy/Dockerfile), selectors against labels, each container's
environment against its Settings class (and at least what docker-compose.yml sets for the
same container), the workers' metrics, and what the NetworkPolicies let through, connection
by connection. test_the_checks_catch_broken_manifests breaks manifests on purpose.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.auth import hash_key
from loyalty_shared.devstack.stack import DEV_KEYS, DEV_MEMBER_TOKEN_SECRET
from loyalty_shared.settings import DEV_ERASURE_KEY
from tests.k8s_kustomize import Unsupported, render
from tests.k8s_manifests import (
    DB_SERVICES,
    K8S,
    SECRETS_EXAMPLE,
    STORES,
    TARGETS,
    Object,
    check_environment,
    check_images_and_commands,
    check_models,
    check_network_policies,
    check_probes,
    check_resources_and_security,
    check_scraping,
    check_selectors,
    check_workloads,
    container,
    find,
    kustomize_command,
    of_kind,
    pods,
    rendered,
    store_endpoints,
    workloads,
)
from tests.k8s_netpol import Endpoint, allowed


def _key(obj: Object) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _kustomize(directory: Path) -> list[Object] | None:
    """``kubectl kustomize`` (or ``kustomize build``) of the folder; None without either."""
    command = kustomize_command()
    if command is None:
        return None
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return sorted((d for d in yaml.safe_load_all(result.stdout) if d), key=_key)


# ------------------------------------------------------------------ the manifests
@pytest.mark.parametrize("target", TARGETS)
def test_kustomize_renders_what_the_python_render_does(target: str) -> None:
    theirs = _kustomize(K8S / target)
    if theirs is None:
        pytest.skip("neither kubectl nor kustomize here: the Python render stands alone")
    assert theirs == sorted(rendered(target), key=_key)


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_reads_into_the_kubernetes_models(target: str) -> None:
    check_models(rendered(target))
    check_models(list(yaml.safe_load_all(SECRETS_EXAMPLE.read_text())))
    check_workloads(rendered(target))


@pytest.mark.parametrize("target", TARGETS)
def test_probes_resources_security_images_and_metrics(target: str) -> None:
    objects = rendered(target)
    check_probes(objects)
    check_resources_and_security(objects)
    check_images_and_commands(objects)
    check_scraping(objects)


@pytest.mark.parametrize("target", TARGETS)
def test_selectors_target_existing_pods(target: str) -> None:
    check_selectors(rendered(target))


@pytest.mark.parametrize("target", TARGETS)
def test_each_container_environment_is_read_by_its_settings(target: str) -> None:
    check_environment(rendered(target))


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_let_through_only_what_the_platform_needs(target: str) -> None:
    check_network_policies(rendered(target), store_endpoints(target))


def test_prod_reaches_the_stores_only_in_the_subnets_it_names() -> None:
    objects = rendered("overlays/prod")
    policies = of_kind(objects, "NetworkPolicy")
    elsewhere = {s: Endpoint(s, address="10.20.0.5") for s in STORES}
    for pod in pods(objects).values():
        assert not any(allowed(policies, pod, e, STORES[s]) for s, e in elsewhere.items())


def test_secrets_are_never_rendered_with_values_outside_dev() -> None:
    example = {s["metadata"]["name"]: s for s in yaml.safe_load_all(SECRETS_EXAMPLE.read_text())}
    for secret in example.values():
        for key, value in secret["stringData"].items():
            assert re.search(r"<[^>]+>", value), f"{key}: a placeholder, never a value"
    assert not of_kind(rendered("base"), "Secret")
    assert not of_kind(rendered("overlays/prod"), "Secret")
    listed = {(n, k) for n, s in example.items() for k in s["stringData"]}
    for target in TARGETS:  # every key a container reads is in the example, and no other
        referenced = {
            (ref["name"], ref["key"])
            for w in workloads(rendered(target)).values()
            for v in container(w).get("env", [])
            if (ref := v.get("valueFrom", {}).get("secretKeyRef"))
        }
        assert referenced == listed, target
    dev_secrets = of_kind(rendered("overlays/dev"), "Secret")
    dev = {s["metadata"]["name"]: s["stringData"] for s in dev_secrets}
    assert {(n, k) for n, data in dev.items() for k in data} == listed
    # dev holds only the public dev credentials of `make run`
    keys = json.loads(dev["gateway-secrets"]["GATEWAY_API_KEYS"])
    assert {k["sha256"] for k in keys} == {hash_key(key) for key in DEV_KEYS.values()}
    assert dev["gateway-secrets"]["GATEWAY_MEMBER_TOKEN_SECRET"] == DEV_MEMBER_TOKEN_SECRET
    for service in DB_SERVICES:
        erasure = dev[f"{service}-secrets"][f"{service.upper()}_ERASURE_HMAC_SECRET"]
        assert erasure == DEV_ERASURE_KEY


# ------------------------------------------------------------------ the checks can fail
def _c(objects: list[Object], name: str) -> Object:
    """The container of a workload."""
    return container(workloads(objects)[name])


def _pod(objects: list[Object], name: str) -> Object:
    """The pod template of a workload."""
    template: Object = workloads(objects)[name]["spec"]["template"]
    return template


def _variable(objects: list[Object], workload: str, name: str) -> Object:
    """A variable of a workload's container, by name."""
    found: list[Object] = [v for v in _c(objects, workload)["env"] if v["name"] == name]
    assert len(found) == 1, name
    return found[0]


def _policies(objects: list[Object]) -> None:
    check_network_policies(objects, store_endpoints("overlays/prod"))


NAME, COMPONENT = "app.kubernetes.io/name", "app.kubernetes.io/component"
PLAIN_SECRET = {"name": "GATEWAY_MEMBER_TOKEN_SECRET", "value": "x" * 40}
Breakage = Callable[[list[Object]], Any]
BREAKAGES: dict[str, tuple[Breakage, Callable[[list[Object]], None]]] = {
    "no readiness probe": (lambda o: _c(o, "points-api").pop("readinessProbe"), check_probes),
    "liveness on /ready": (
        lambda o: _c(o, "gateway")["livenessProbe"]["httpGet"].update(path="/ready"),
        check_probes,
    ),
    "worker probe on another port": (
        lambda o: _c(o, "feedback-worker")["livenessProbe"]["httpGet"].update(port=9999),
        check_probes,
    ),
    "mislabelled pods": (
        lambda o: _pod(o, "feedback-worker")["metadata"]["labels"].update({COMPONENT: "job"}),
        check_selectors,
    ),
    "Service selector typo": (
        lambda o: find(o, "Service", "points-api")["spec"]["selector"].update({NAME: "point"}),
        check_selectors,
    ),
    "spread over another Deployment's pods": (
        lambda o: _pod(o, "gateway")["spec"]["topologySpreadConstraints"][0].update(
            labelSelector={"matchLabels": {NAME: "points", COMPONENT: "api"}}
        ),
        check_selectors,
    ),
    "PDB selector typo": (
        lambda o: find(o, "PodDisruptionBudget", "gateway")["spec"].update(
            selector={"matchLabels": {NAME: "gw"}}
        ),
        check_selectors,
    ),
    "HPA on a missing Deployment": (
        lambda o: find(o, "HorizontalPodAutoscaler", "points-api")["spec"]["scaleTargetRef"].update(
            name="points"
        ),
        check_selectors,
    ),
    "no limits": (
        lambda o: _c(o, "segmentation-worker")["resources"].pop("limits"),
        check_resources_and_security,
    ),
    "may run as root": (
        lambda o: _pod(o, "points-migrate")["spec"]["securityContext"].pop("runAsNonRoot"),
        check_resources_and_security,
    ),
    "service links": (
        lambda o: _pod(o, "gateway")["spec"].pop("enableServiceLinks"),
        check_resources_and_security,
    ),
    "a variable no Settings reads": (
        lambda o: find(o, "ConfigMap", "points-config")["data"].update(POINTS_NOT_A_SETTING="1"),
        check_environment,
    ),
    "a required variable missing": (
        lambda o: _c(o, "points-worker")["env"].remove(
            _variable(o, "points-worker", "POINTS_DATABASE_URL")
        ),
        check_environment,
    ),
    "a secret in plain sight": (
        lambda o: _c(o, "gateway")["env"].__setitem__(
            _c(o, "gateway")["env"].index(_variable(o, "gateway", PLAIN_SECRET["name"])),
            PLAIN_SECRET,
        ),
        check_environment,
    ),
    "a variable set twice": (
        lambda o: _c(o, "gateway")["env"].append(PLAIN_SECRET),
        check_environment,
    ),
    "a service trusting another secret": (
        lambda o: _variable(o, "points-api", "POINTS_GATEWAY_SECRET")["valueFrom"][
            "secretKeyRef"
        ].update(key="GATEWAY_MEMBER_TOKEN_SECRET"),
        check_environment,
    ),
    "rate limits kept per replica": (
        lambda o: find(o, "ConfigMap", "gateway-config")["data"].pop(
            "GATEWAY_RATE_LIMIT_STORE_URL"
        ),
        check_environment,
    ),
    "gateway routed to no Service": (
        lambda o: find(o, "ConfigMap", "gateway-config")["data"].update(
            GATEWAY_POINTS_URL="http://points:8001"
        ),
        check_environment,
    ),
    "another command": (
        lambda o: _c(o, "points-worker").update(args=["serve"]),
        check_images_and_commands,
    ),
    "entrypoint replaced": (
        lambda o: _c(o, "feedback-api").update(command=["python", "-m", "feedback"]),
        check_images_and_commands,
    ),
    "another service's image": (
        lambda o: _c(o, "segmentation-api").update(image="loyalty-points:1"),
        check_images_and_commands,
    ),
    "metrics annotation off by one": (
        lambda o: _pod(o, "points-worker")["metadata"]["annotations"].update(
            {"prometheus.io/port": "9102"}
        ),
        check_scraping,
    ),
    "gateway shut out of points": (
        lambda o: find(o, "NetworkPolicy", "points-api-ingress")["spec"]["ingress"][0]["from"].pop(
            0
        ),
        _policies,
    ),
    "no default deny": (lambda o: o.remove(find(o, "NetworkPolicy", "default-deny")), _policies),
    "a migration among the apps": (
        lambda o: find(o, "Deployment", "points-api")["metadata"]["labels"].update(
            {COMPONENT: "migrate"}
        ),
        check_workloads,
    ),
    "a field the API does not know": (
        lambda o: find(o, "Deployment", "gateway")["spec"].update(replica=2),
        check_models,
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_checks_catch_broken_manifests(breakage: str) -> None:
    objects = rendered("overlays/prod")
    breaker, check = BREAKAGES[breakage]
    check(objects)  # passes as rendered
    breaker(objects)
    with pytest.raises((AssertionError, ValueError)):  # pydantic's ValidationError too
        check(objects)


# ------------------------------------------------------------------ the Python render
def _write(path: Path, documents: list[Object] | Object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    items = documents if isinstance(documents, list) else [documents]
    path.write_text(yaml.safe_dump_all(items, sort_keys=False))


def _deployment(name: str) -> Object:
    pod = {"containers": [{"name": "c", "image": "loyalty-points:latest", "ports": []}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"drop": "1", "keep": "1"}},
        "spec": {"template": {"spec": pod}},
    }


def test_the_python_render_patches_places_and_retags(tmp_path: Path) -> None:
    _write(tmp_path / "base" / "app.yaml", [_deployment("a-worker"), _deployment("b-api")])
    _write(tmp_path / "base" / "kustomization.yaml", {"resources": ["app.yaml"]})
    patch = [
        {"op": "add", "path": "/spec/replicas", "value": 2},
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/ports/-",
            "value": {"containerPort": 1},
        },
        {"op": "replace", "path": "/spec/template/spec/containers/0/name", "value": "w"},
        {"op": "remove", "path": "/metadata/labels/drop"},
    ]
    overlay = {
        "namespace": "ns",
        "resources": ["../base"],
        "images": [{"name": "loyalty-points", "newName": "r.example/lp", "newTag": "7"}],
        **_patches({"kind": "Deployment", "name": ".*-worker"}, yaml.safe_dump(patch)),
    }
    _write(tmp_path / "overlay" / "kustomization.yaml", overlay)
    worker, api = render(tmp_path / "overlay")
    assert worker["metadata"] == {"name": "a-worker", "namespace": "ns", "labels": {"keep": "1"}}
    assert worker["spec"]["replicas"] == 2
    assert worker["spec"]["template"]["spec"]["containers"] == [
        {"name": "w", "image": "r.example/lp:7", "ports": [{"containerPort": 1}]}
    ]
    assert "replicas" not in api["spec"] and "drop" in api["metadata"]["labels"]  # not a target
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == "r.example/lp:7"
    theirs = _kustomize(tmp_path / "overlay")
    if theirs is not None:
        assert theirs == sorted([worker, api], key=_key)


def _patches(target: Object, operations: str) -> Object:
    return {"patches": [{"target": target, "patch": operations}]}


DEPLOYMENTS = {"kind": "Deployment"}
REFUSED: dict[str, tuple[Object, type[Exception]]] = {
    "a field not implemented": ({"commonLabels": {"a": "b"}}, Unsupported),
    "a strategic merge patch": (_patches(DEPLOYMENTS, "spec: {replicas: 2}"), Unsupported),
    "a target by labels": (_patches({"labelSelector": "a=b"}, "[]"), Unsupported),
    "a patch that selects nothing": (_patches({"kind": "Job"}, "[]"), Unsupported),
    "an operation not implemented": (
        _patches(DEPLOYMENTS, '[{"op": "move", "from": "/spec", "path": "/s"}]'),
        Unsupported,
    ),
    "replacing what is not there": (
        _patches(DEPLOYMENTS, '[{"op": "replace", "path": "/spec/x", "value": 1}]'),
        KeyError,
    ),
    "an object twice": ({"resources": ["app.yaml", "app.yaml"]}, Unsupported),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_python_render_refuses_what_it_does_not_implement(case: str, tmp_path: Path) -> None:
    fields, error = REFUSED[case]
    _write(tmp_path / "app.yaml", _deployment("a"))
    _write(tmp_path / "kustomization.yaml", {"resources": ["app.yaml"], **fields})
    with pytest.raises(error):
        render(tmp_path)
