"""Kafka SASL/SCRAM and TLS from settings, for every producer, consumer and admin client.

The embedded broker (Tansu 0.6, memory storage) offers no SASL mechanism unless started
with ``--authentication``, and then refuses the very call that would create its first
user, so no SCRAM login can succeed against it. What is checked here instead: the options
``connection_options`` derives from the settings, that they reach aiokafka's clients, that
the SASL handshake really goes out on the wire (the real broker answers it), and that no
client in the code is made without them.
"""

import ast
import datetime
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from loyalty_shared.kafka import connection_options, ensure_topics, make_producer
from loyalty_shared.pipeline import consumer_lag
from loyalty_shared.settings import CommonSettings
from loyalty_shared.testing import Infra

ROOT = Path(__file__).resolve().parents[2]
SCRAM = {
    "kafka_security_protocol": "SASL_PLAINTEXT",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "points",
    "kafka_sasl_password": "points-kafka-password",
}


def _settings(**values: Any) -> CommonSettings:
    return CommonSettings(environment="test", kafka_bootstrap="kafka:9092", **values)


def _ca_file(folder: Path, name: str) -> Path:
    """A self-signed CA certificate (PEM), as an operator's private CA would be."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_plaintext_without_credentials_by_default() -> None:
    options = connection_options(_settings())
    assert options == {"bootstrap_servers": "kafka:9092", "security_protocol": "PLAINTEXT"}


async def test_sasl_scram_options_reach_every_kind_of_client() -> None:
    settings = _settings(**SCRAM)
    options = connection_options(settings)
    assert "ssl_context" not in options  # SASL_PLAINTEXT: no TLS
    clients = [
        make_producer(settings, client_id="p").client,
        AIOKafkaConsumer(**options)._client,
        AIOKafkaAdminClient(**options)._client,
    ]
    for client in clients:
        assert client._security_protocol == "SASL_PLAINTEXT"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "points"
        assert client._sasl_plain_password == "points-kafka-password"


async def test_sasl_ssl_verifies_the_brokers_against_the_configured_ca(tmp_path: Path) -> None:
    ca = _ca_file(tmp_path, "loyalty test CA")
    settings = _settings(
        **{**SCRAM, "kafka_security_protocol": "SASL_SSL"}, kafka_ssl_cafile=str(ca)
    )
    context = connection_options(settings)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(entry[0] for entry in c["subject"]) for c in context.get_ca_certs()]
    assert {"commonName": "loyalty test CA"} in subjects
    producer = make_producer(settings, client_id="p")
    assert producer.client._ssl_context is not None
    assert producer.client._security_protocol == "SASL_SSL"
    # SSL alone: TLS, no SASL
    plain_tls = connection_options(_settings(kafka_security_protocol="SSL"))
    assert "sasl_mechanism" not in plain_tls and "ssl_context" in plain_tls


def test_a_missing_ca_file_fails_at_once(tmp_path: Path) -> None:
    settings = _settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "no.pem"))
    with pytest.raises(FileNotFoundError):
        connection_options(settings)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_without_credentials_is_refused_at_start(protocol: str) -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
        _settings(kafka_security_protocol=protocol)
    with pytest.raises(ValidationError, match="KAFKA_SASL_PASSWORD"):
        _settings(kafka_security_protocol=protocol, kafka_sasl_username="points")


async def test_the_sasl_handshake_goes_out_to_the_real_broker(
    infra: Infra, caplog: pytest.LogCaptureFixture
) -> None:
    """The dev broker offers no SASL mechanism: every kind of client configured for SCRAM
    gets its refusal of the handshake (so the options went out on the wire), and the same
    calls with the default settings succeed."""
    scram = CommonSettings(environment="test", kafka_bootstrap=infra.kafka_bootstrap, **SCRAM)
    # (the dev broker has no InitProducerId: the idempotent producer stays off here)
    plain = CommonSettings(
        environment="test", kafka_bootstrap=infra.kafka_bootstrap, kafka_idempotent_producer=False
    )
    caplog.set_level(logging.ERROR, logger="aiokafka")

    producer = make_producer(scram, client_id="sasl-test")
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    with pytest.raises(KafkaConnectionError):
        await ensure_topics(scram, ["loyalty.sasl-test"])
    with pytest.raises(KafkaConnectionError):
        await consumer_lag(scram, "sasl-test-group", ["loyalty.sasl-test"])
    refusals = [r for r in caplog.records if "UnsupportedSaslMechanismError" in r.getMessage()]
    assert len(refusals) >= 3, [r.getMessage() for r in caplog.records]

    ok = make_producer(plain, client_id="plain-test")
    await ok.start()
    await ok.stop()


def _kafka_client_calls(tree: ast.AST) -> list[ast.Call]:
    names = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in names
    ]


def test_every_kafka_client_in_the_code_is_made_with_the_connection_options() -> None:
    """A producer, consumer or admin client made any other way would ignore SASL and TLS."""
    sources = [*(ROOT / "shared" / "src").rglob("*.py"), *(ROOT / "services").glob("*/src/**/*.py")]
    found = 0
    for path in sources:
        for call in _kafka_client_calls(ast.parse(path.read_text())):
            found += 1
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            spread = [k.value for k in call.keywords if k.arg is None]
            assert any(
                isinstance(v, ast.Call)
                and isinstance(v.func, ast.Name)
                and v.func.id == "connection_options"
                for v in spread
            ), f"{where}: pass **connection_options(settings)"
            assert "bootstrap_servers" not in {k.arg for k in call.keywords}, where
    assert found >= 5  # producer, admin (topics), consumer, relay probe, lag probe
