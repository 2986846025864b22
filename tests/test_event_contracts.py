"""The contract between producers and consumers, checked from the models.

- every event type a consumer handles is declared by a producer (a payload model in
  ``loyalty_shared.contracts``), on a topic the consumer reads;
- consumers read payloads only through those models (no service touches ``event.data``),
  so a field the producer's model lacks cannot be read: mypy refuses the attribute;
- each declared type is published by its service's code (its model is used there);
- no service imports another (the contracts live in the shared package for that reason).
"""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from feedback.settings import FeedbackSettings
from feedback.worker import build_consumer as feedback_consumer
from loyalty_shared.contracts import CONTRACTS, PUBLISHERS
from loyalty_shared.inbox import EventConsumer
from points.settings import PointsSettings
from points.worker import build_consumer as points_consumer
from segmentation.settings import SegmentationSettings
from segmentation.worker import build_consumer as segmentation_consumer

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("points", "segmentation", "feedback", "gateway", "webhooks")


def _sources(service: str) -> list[Path]:
    return sorted((ROOT / "services" / service / "src" / service).rglob("*.py"))


def _consumers(
    points: PointsSettings, segmentation: SegmentationSettings, feedback: FeedbackSettings
) -> dict[str, EventConsumer]:
    def sessions(url: str) -> async_sessionmaker[AsyncSession]:
        # no connection is made: the consumers are only looked at
        return async_sessionmaker(create_async_engine(url))

    return {
        "points": points_consumer(points, sessions(points.sqlalchemy_url())),
        "segmentation": segmentation_consumer(
            segmentation, sessions(segmentation.sqlalchemy_url())
        ),
        "feedback": feedback_consumer(feedback, sessions(feedback.sqlalchemy_url())),
    }


def test_every_handled_type_is_declared_by_a_producer_on_a_topic_the_consumer_reads(
    points_settings: PointsSettings,
    segmentation_settings: SegmentationSettings,
    feedback_settings: FeedbackSettings,
) -> None:
    consumers = _consumers(points_settings, segmentation_settings, feedback_settings)
    handled: set[str] = set()
    for service, consumer in consumers.items():
        types = set(consumer.handlers) | set(getattr(consumer, "batch_handlers", {}))
        assert types, service
        for type_ in sorted(types):
            model = CONTRACTS.get(type_)
            assert model is not None, f"{service} handles {type_}, which no producer declares"
            assert model.TOPIC in consumer.topics, f"{service} does not read {model.TOPIC}"
        handled |= types


def test_consumers_read_payloads_only_through_the_producers_models() -> None:
    """No ``<name>.data`` in any service: payloads are read with ``Model.of(event)``."""
    found = []
    for service in SERVICES:
        for path in _sources(service):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr == "data"
                    and isinstance(node.value, ast.Name)
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def _names_for(events_py: Path, model: str) -> set[str]:
    """How the service's ``events.py`` lets its code name ``model``: the model itself, a
    constant set from it (``X = contract.Model.TYPE``), a helper function that builds it."""
    names = {model}
    for node in ast.parse(events_py.read_text()).body:
        mentions = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)} | {
            n.id for n in ast.walk(node) if isinstance(n, ast.Name)
        }
        if model not in mentions:
            continue
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            names.add(f"events.{node.targets[0].id}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(f"events.{node.name}(")
    return names


def test_every_declared_type_is_published_by_its_service() -> None:
    """Each model a service declares is built somewhere in its code (not only named in its
    events.py): a declared event no code publishes would be a contract nobody keeps."""
    for service, models in PUBLISHERS.items():
        events_py = ROOT / "services" / service / "src" / service / "events.py"
        code = "\n".join(p.read_text() for p in _sources(service) if p != events_py)
        for model in models:
            names = _names_for(events_py, model.__name__)
            assert any(n in code for n in names), f"{service} never publishes {model.TYPE}"


def test_no_service_imports_another() -> None:
    """Service code never imports another service (the test fixtures in ``testing*.py``,
    which start services side by side in one process, aside)."""
    found = []
    for service in SERVICES:
        others = set(SERVICES) - {service}
        for path in _sources(service):
            if path.name.startswith("testing"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in others:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert found == []
