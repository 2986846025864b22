"""deploy/k8s as tests/test_k8s.py sees it: the renders, lookups, and one check per concern.

Each ``check_*`` raises AssertionError (or the client's ValidationError) naming the object at
fault; test_k8s.py runs them on the base and both overlays, and on broken copies.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes.client
import yaml
from kubernetes.utils import parse_quantity
from sqlalchemy.engine import make_url

from feedback.settings import FeedbackSettings
from gateway.settings import GatewaySettings
from loyalty_shared.settings import CommonSettings
from points.settings import PointsSettings
from segmentation.settings import SegmentationSettings
from tests.k8s_kustomize import render
from tests.k8s_netpol import Endpoint, allowed, selects
from webhooks.settings import WebhooksSettings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
TARGETS = ("base", "overlays/dev", "overlays/prod")
SECRETS_EXAMPLE = K8S / "base" / "secrets.example.yaml"

SETTINGS: dict[str, type[CommonSettings]] = {
    "points": PointsSettings,
    "segmentation": SegmentationSettings,
    "feedback": FeedbackSettings,
    "webhooks": WebhooksSettings,
    "gateway": GatewaySettings,
}
DB_SERVICES = ("points", "segmentation", "feedback", "webhooks")
# workload (named as its docker-compose.yml container) -> (service, command of the image)
WORKLOADS: dict[str, tuple[str, str]] = {
    **{f"{s}-migrate": (s, "migrate") for s in DB_SERVICES},
    **{f"{s}-api": (s, "api") for s in DB_SERVICES},
    **{f"{s}-worker": (s, "worker") for s in DB_SERVICES},
    "gateway": ("gateway", "api"),
}
STORES = {"postgres": 5432, "kafka": 9092, "valkey": 6379}
SECRET_WORDS = ("PASSWORD", "SECRET", "API_KEY", "DATABASE_URL")
# what an operator puts in the Secrets (base/secrets.example.yaml has placeholders)
TEST_SECRETS = {
    **{
        f"{s.upper()}_DATABASE_URL": f"postgresql+asyncpg://{s}:pw{s}@postgres:5432/loyalty_{s}"
        for s in DB_SERVICES
    },
    **{f"{s.upper()}_ERASURE_HMAC_SECRET": "e" * 64 for s in DB_SERVICES},
    **{f"{s.upper()}_KAFKA_SASL_PASSWORD": f"{s}-kafka-password" for s in DB_SERVICES},
    "GATEWAY_API_KEYS": json.dumps([{"name": "ops", "scope": "admin", "sha256": "a" * 64}]),
    "GATEWAY_MEMBER_TOKEN_SECRET": "m" * 64,
    "GATEWAY_UPSTREAM_SECRET": "g" * 64,
    "GATEWAY_CONSOLE_SECRET": "c" * 64,
    "GATEWAY_RATE_LIMIT_STORE_PASSWORD": "valkey-password",
}

Object = dict[str, Any]


# ------------------------------------------------------------------ rendering
@cache
def _python_render(target: str) -> str:
    return json.dumps(render(K8S / target))


def rendered(target: str) -> list[Object]:
    """The target's objects (a fresh copy: tests may change it)."""
    objects: list[Object] = json.loads(_python_render(target))
    return objects


def kustomize_command() -> list[str] | None:
    if (binary := shutil.which("kustomize")) is not None:
        return [binary, "build"]
    if (kubectl := shutil.which("kubectl")) is not None:
        probe = subprocess.run([kubectl, "kustomize", "--help"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return [kubectl, "kustomize"]
    return None


def _key(obj: Object) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def find(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} in the render"
    return found[0]


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]


def workloads(objects: list[Object]) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in ("Deployment", "Job")}


def pod_spec(workload: Object) -> Object:
    spec: Object = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Object) -> Object:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container"
    assert not pod_spec(workload).get("initContainers")
    found: Object = containers[0]
    return found


def port_named(workload: Object, name: str) -> int:
    ports = {p.get("name"): p["containerPort"] for p in container(workload).get("ports", [])}
    assert name in ports, f"{workload['metadata']['name']}: no port named {name}"
    return int(ports[name])


def namespace_of(objects: list[Object]) -> str:
    namespaces = {o["metadata"].get("namespace", "default") for o in objects}
    assert len(namespaces) == 1
    namespace: str = namespaces.pop()
    return namespace


@cache
def compose_env(container_name: str) -> frozenset[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return frozenset(compose["services"][container_name].get("environment", {}))


@cache
def dockerfile_user() -> tuple[int, int]:
    users = re.findall(r"^USER (\d+):(\d+)$", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    assert len(users) == 1, "the runtime stage sets one numeric USER"
    return int(users[0][0]), int(users[0][1])


def prefix_of(service: str) -> str:
    return str(SETTINGS[service].model_config.get("env_prefix", "")).upper()


# ------------------------------------------------------------------ the checks
def check_models(objects: list[Object]) -> None:
    """Each object is a valid object of the client's model for its apiVersion and kind."""
    api = kubernetes.client.ApiClient()
    for obj in objects:
        version = obj["apiVersion"].split("/")[-1]
        klass = getattr(kubernetes.client, version.capitalize() + obj["kind"])
        klass.model_validate(obj)  # no unknown field, every type right
        model = api.deserialize(json.dumps(obj), klass.__name__, "application/json")
        assert isinstance(model, klass) and model.metadata.name == obj["metadata"]["name"]


def check_workloads(objects: list[Object]) -> None:
    found = {(o["kind"], name) for name, o in workloads(objects).items()}
    expected = {("Job" if c == "migrate" else "Deployment", n) for n, (_, c) in WORKLOADS.items()}
    assert found == expected
    for name, workload in workloads(objects).items():
        service, command = WORKLOADS[name]
        for labels in (
            workload["metadata"]["labels"],
            workload["spec"]["template"]["metadata"]["labels"],
        ):
            assert labels["app.kubernetes.io/name"] == service, name
            assert labels["app.kubernetes.io/component"] == command, name
    services = {o["metadata"]["name"] for o in of_kind(objects, "Service")}
    assert services == {"gateway", *(f"{s}-api" for s in DB_SERVICES), *STORES}
    # the selectors deploy/README.md applies, waits and restarts by
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "loyalty", obj["metadata"]["name"]
    migrations = [
        o["metadata"]["name"]
        for o in objects
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "migrate"
    ]
    assert sorted(migrations) == sorted(n for n, (_, c) in WORKLOADS.items() if c == "migrate")


def check_probes(objects: list[Object]) -> None:
    for name, workload in workloads(objects).items():
        service, command = WORKLOADS[name]
        spec = container(workload)
        if command == "migrate":
            assert not {"readinessProbe", "livenessProbe", "startupProbe"} & set(spec), name
            assert pod_spec(workload)["restartPolicy"] == "Never", name
            continue
        port_name, paths = (
            ("http", {"readinessProbe": "/ready", "livenessProbe": "/health"})
            if command == "api"
            else ("metrics", {"readinessProbe": "/metrics", "livenessProbe": "/metrics"})
        )
        expected_port = (
            SETTINGS[service].model_fields["port"].default
            if command == "api"
            else metrics_port_in_compose(name)
        )
        assert port_named(workload, port_name) == expected_port, name
        for probe_name, path in {**paths, "startupProbe": paths["livenessProbe"]}.items():
            probe = spec.get(probe_name)
            assert probe is not None, f"{name}: no {probe_name}"
            assert probe["httpGet"]["path"] == path, f"{name}: {probe_name}"
            assert probe["httpGet"]["port"] in (port_name, expected_port), f"{name}: {probe_name}"


def metrics_port_in_compose(container_name: str) -> int:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"][container_name]["environment"]
    service, _ = WORKLOADS[container_name]
    return int(environment[f"{prefix_of(service)}WORKER_METRICS_PORT"])


def quantity(text: str) -> Decimal:
    """A resource quantity (``250m``, ``1``, ``512Mi``) as a number."""
    value: Decimal = parse_quantity(text)  # type: ignore[no-untyped-call]
    return value


def check_resources_and_security(objects: list[Object]) -> None:
    uid, gid = dockerfile_user()
    for name, workload in workloads(objects).items():
        pod = pod_spec(workload)
        context = pod.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, name
        assert (context.get("runAsUser"), context.get("runAsGroup")) == (uid, gid), name
        assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        # no <SERVICE>_PORT=tcp://... variables: GATEWAY_PORT would be read as a setting
        assert pod.get("enableServiceLinks") is False, name
        spec = container(workload)
        resources = spec.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            assert request is not None and limit is not None, f"{name}: {resource}"
            assert quantity(request) <= quantity(limit), f"{name}: {resource}"
        security = spec.get("securityContext", {})
        assert security.get("allowPrivilegeEscalation") is False, name
        assert security.get("readOnlyRootFilesystem") is True, name
        assert security.get("capabilities", {}).get("drop") == ["ALL"], name
        mounts = {m["mountPath"]: m["name"] for m in spec.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: a writable /tmp"


def check_images_and_commands(objects: list[Object]) -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/bin/sh", "/app/deploy/entrypoint.sh"]' in dockerfile
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, workload in workloads(objects).items():
        service, command = WORKLOADS[name]
        spec = container(workload)
        # the image's entrypoint runs `python -m <service> <command>`
        assert "command" not in spec, f"{name}: keep the image's ENTRYPOINT"
        assert spec.get("args") == [command] == compose[name]["command"], name
        repository, _, tag = spec["image"].rpartition("/")[2].partition(":")
        expected = compose[name]["image"].split(":")[0]
        assert repository == expected == f"loyalty-{service}", f"{name}: {spec['image']}"
        assert tag, f"{name}: a tag"


def selected_workloads(objects: list[Object], selector: Object) -> list[str]:
    return [
        name
        for name, w in workloads(objects).items()
        if selects(selector, w["spec"]["template"]["metadata"]["labels"])
    ]


def check_selectors(objects: list[Object]) -> None:
    deployments = {o["metadata"]["name"]: o for o in of_kind(objects, "Deployment")}
    for name, deployment in deployments.items():
        match = deployment["spec"]["selector"]
        assert set(match) == {"matchLabels"} and match["matchLabels"], name
        assert selected_workloads(objects, match) == [name], f"{name}: its selector"
        for spread in pod_spec(deployment).get("topologySpreadConstraints", []):
            spreads = selected_workloads(objects, spread["labelSelector"])
            assert spreads == [name], f"{name}: spreads {spreads}"
    for service in of_kind(objects, "Service"):
        name, spec = service["metadata"]["name"], service["spec"]
        if name in STORES:
            assert spec["type"] == "ExternalName" and "selector" not in spec, name
            assert [p["port"] for p in spec["ports"]] == [STORES[name]], name
            continue
        targets = selected_workloads(objects, {"matchLabels": spec["selector"]})
        assert len(targets) == 1 and targets[0] in deployments, f"Service {name}: {targets}"
        for port in spec["ports"]:
            assert port_named(deployments[targets[0]], port["targetPort"]) == port["port"]
    budgets = [
        selected_workloads(objects, p["spec"]["selector"])
        for p in of_kind(objects, "PodDisruptionBudget")
    ]
    covered = sorted(t for found in budgets for t in found)
    assert covered == sorted(deployments), f"a PodDisruptionBudget each: {covered}"
    assert all(len(found) == 1 for found in budgets), budgets
    scaled = []
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        ref, spec = hpa["spec"]["scaleTargetRef"], hpa["spec"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
        target = deployments.get(ref["name"])
        assert target is not None, f"HPA {hpa['metadata']['name']}: no {ref['name']}"
        assert "replicas" not in target["spec"], f"{ref['name']}: the HPA owns replicas"
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        [metric] = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        scaled.append(ref["name"])
    apis = [n for n in deployments if WORKLOADS[n][1] == "api"]
    assert sorted(scaled) == sorted(apis)
    for policy in of_kind(objects, "NetworkPolicy"):
        selector, name = policy["spec"]["podSelector"], policy["metadata"]["name"]
        assert (
            selector == {} if name == "default-deny" else selected_workloads(objects, selector)
        ), name
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert selected_workloads(objects, peer["podSelector"]), f"{name}: {peer}"


def secret_values(objects: list[Object]) -> dict[str, dict[str, str]]:
    """The Secrets' data: rendered (dev), or made by the operator (secrets.example.yaml)."""
    found = {s["metadata"]["name"]: s["stringData"] for s in of_kind(objects, "Secret")}
    if found:
        return found
    example = yaml.safe_load_all(SECRETS_EXAMPLE.read_text())
    return {s["metadata"]["name"]: {k: TEST_SECRETS[k] for k in s["stringData"]} for s in example}


def container_env(objects: list[Object], workload: Object) -> tuple[dict[str, str], set[str]]:
    """The container's variables (values resolved) and which of them come from Secrets."""
    spec, secrets = container(workload), secret_values(objects)
    values: dict[str, str] = {}
    from_secrets: set[str] = set()
    for source in spec.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "Secrets are read key by key"
        values.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    names = [variable["name"] for variable in spec.get("env", [])]
    assert len(names) == len(set(names)), f"a variable set twice: {names}"
    assert not set(names) & set(values), "a variable both in the ConfigMap and the container"
    for variable in spec.get("env", []):
        name = variable["name"]
        if "value" in variable:
            values[name] = variable["value"]
            continue
        ref = variable["valueFrom"]["secretKeyRef"]
        assert not ref.get("optional"), name
        values[name] = secrets[ref["name"]][ref["key"]]
        from_secrets.add(name)
    return values, from_secrets


def load_settings(service: str, values: dict[str, str]) -> CommonSettings:
    prefix = prefix_of(service)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefix)}
    with mock.patch.dict(os.environ, {**clean, **values}, clear=True):
        return SETTINGS[service]()


# secret settings a service's containers need not set: the gateway keeps no data, uses no
# Kafka and sends its secret (upstream_secret) rather than checking one
UNWIRED = {"gateway": ("erasure_hmac_secret", "gateway_secret", "kafka_")}
ROTATION_ONLY = "gateway_secret_previous"  # set only while a new gateway secret rolls out


def unwired_secrets(service: str, values: dict[str, str]) -> list[str]:
    """The service's secret settings (passwords, secrets, keys) this container leaves unset."""
    prefix = prefix_of(service)
    return [
        f"{prefix}{field.upper()}"
        for field in SETTINGS[service].model_fields
        if any(word in field.upper() for word in ("PASSWORD", "SECRET", "API_KEY"))
        and field != ROTATION_ONLY
        and not field.startswith(UNWIRED.get(service, ()))
        and f"{prefix}{field.upper()}" not in values
    ]


def check_environment(objects: list[Object]) -> None:
    dev = any(o["kind"] == "Secret" for o in objects)
    trusted: dict[str, str] = {}  # container -> the gateway secret it accepts
    sent = ""  # what the gateway sends
    for name, workload in workloads(objects).items():
        service, command = WORKLOADS[name]
        values, from_secrets = container_env(objects, workload)
        prefix, fields = prefix_of(service), set(SETTINGS[service].model_fields)
        for key in values:
            assert key.startswith(prefix) and key[len(prefix) :].lower() in fields, (
                f"{name}: {key} is not read by {SETTINGS[service].__name__}"
            )
            secret = any(word in key for word in SECRET_WORDS)
            assert secret == (key in from_secrets), f"{name}: {key} (Secret or ConfigMap?)"
        missing = compose_env(name) - set(values)
        assert not missing, f"{name}: docker-compose.yml sets {sorted(missing)}, this does not"
        assert not unwired_secrets(service, values), f"{name}: {unwired_secrets(service, values)}"
        settings = load_settings(service, values)
        assert settings.environment == ("dev" if dev else "production"), name
        if command != "migrate":
            assert settings.host == "0.0.0.0", name
        if command == "api":
            assert settings.port == port_named(workload, "http"), name
        if command == "worker":
            assert settings.worker_metrics_port == port_named(workload, "metrics"), name
        if service in DB_SERVICES:
            url = make_url(settings.sqlalchemy_url())
            assert (url.host, url.port, url.database) == ("postgres", 5432, f"loyalty_{service}")
            assert url.username == service, name
            assert settings.kafka_bootstrap == f"kafka:{STORES['kafka']}", name
            assert settings.erasure_key(), name
            trusted[name] = settings.gateway_secret
        else:
            sent = check_gateway_settings(objects, settings)
    assert sent and all(secret == sent for secret in trusted.values()), (
        "every service accepts the secret the gateway sends"
    )


def check_gateway_settings(objects: list[Object], settings: CommonSettings) -> str:
    """Checks the gateway's routes and stores; the secret it sends the services."""
    assert isinstance(settings, GatewaySettings)
    for service, url in settings.upstreams().items():
        match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url)
        assert match is not None, url
        target = find(objects, "Service", match[1])
        assert [p["port"] for p in target["spec"]["ports"]] == [int(match[2])], url
        selected = selected_workloads(objects, {"matchLabels": target["spec"]["selector"]})
        assert selected == [f"{service}-api"], url
    # the rate-limit buckets every replica shares: the valkey Service, the password apart
    store = make_url(settings.rate_limit_store_url)
    assert store.drivername in ("redis", "rediss") and store.password is None, store
    ports = [p["port"] for p in find(objects, "Service", str(store.host))["spec"]["ports"]]
    assert ports == [store.port or STORES["valkey"]], store
    # what `python -m gateway api` builds at start-up: keys and token secret accepted
    importlib.import_module("gateway.main").create_app(settings)
    return settings.upstream_secret


def check_scraping(objects: list[Object]) -> None:
    for name, workload in workloads(objects).items():
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if WORKLOADS[name][1] != "worker":
            assert "prometheus.io/scrape" not in annotations, name
            continue
        assert annotations.get("prometheus.io/scrape") == "true", name
        port = str(port_named(workload, "metrics"))
        assert annotations.get("prometheus.io/port") == port, f"{name}: the scraped port"
        assert annotations.get("prometheus.io/path") == "/metrics", name


# the stores as each target places them: addresses outside the cluster, or pods (dev)
def store_endpoints(target: str) -> dict[str, Endpoint]:
    if target == "overlays/dev":
        return {s: Endpoint(s, "loyalty-infra", {"app": s}) for s in STORES}
    if target == "overlays/prod":  # inside the subnets the overlay names
        addresses = {"postgres": "192.0.2.10", "kafka": "198.51.100.10", "valkey": "203.0.113.10"}
    else:
        addresses = {"postgres": "10.20.0.5", "kafka": "10.20.1.5", "valkey": "10.20.2.5"}
    return {s: Endpoint(s, address=addresses[s]) for s in STORES}


def pods(objects: list[Object]) -> dict[str, Endpoint]:
    namespace = namespace_of(objects)
    return {
        name: Endpoint(
            name,
            namespace,
            w["spec"]["template"]["metadata"]["labels"],
            {p["name"]: p["containerPort"] for p in container(w).get("ports", [])},
        )
        for name, w in workloads(objects).items()
    }


def check_network_policies(objects: list[Object], stores: dict[str, Endpoint]) -> None:
    policies, all_pods = of_kind(objects, "NetworkPolicy"), pods(objects)
    outside = Endpoint("client", address="198.18.0.10")
    prometheus = Endpoint("prometheus", "monitoring", {"app": "prometheus"})
    stranger = Endpoint("stranger", "shop", {"app": "storefront"})  # no policies
    dns = Endpoint("dns", "kube-system", {"k8s-app": "kube-dns"})
    undeclared = 8080  # a port no container declares: closed everywhere
    for name, pod in all_pods.items():
        service, command = WORKLOADS[name]
        assert allowed(policies, pod, dns, 53, "UDP"), f"{name} -> DNS"
        # only the webhooks worker calls out (the shops' endpoints, https), never into a
        # private network or the cloud's metadata (docs/webhooks.md)
        calls_out = name == "webhooks-worker"
        assert allowed(policies, pod, outside, 443) == calls_out, f"{name} -> the internet"
        for inside in ("10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254"):
            assert not allowed(policies, pod, Endpoint("inside", address=inside), 443), inside
        assert not allowed(policies, pod, stranger, undeclared), f"{name} -> another namespace"
        for port in [*pod.ports.values(), undeclared]:
            declared = port != undeclared
            public = declared and name == "gateway"
            assert allowed(policies, outside, pod, port) == public, f"-> {name}:{port}"
            assert allowed(policies, stranger, pod, port) == public, f"-> {name}:{port}"
            expected = public or (declared and command == "worker")  # or the metrics
            got = allowed(policies, prometheus, pod, port)
            assert got == expected, f"prometheus -> {name}:{port}"
        for other_name, other in all_pods.items():
            other_service, other_command = WORKLOADS[other_name]
            expected = other_command == "api" and (
                (name == "gateway" and other_name != "gateway")
                or (command == "worker" and other_service == service)
            )
            for port in [*other.ports.values(), undeclared]:
                got = allowed(policies, pod, other, port)
                assert got == (expected and port != undeclared), f"{name} -> {other_name}:{port}"
        for store, endpoint in stores.items():
            expected = store == "valkey" if service == "gateway" else store != "valkey"
            got = allowed(policies, pod, endpoint, STORES[store])
            assert got == expected, f"{name} -> {store}: {got}"
