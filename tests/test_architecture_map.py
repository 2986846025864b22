"""docs/architecture.md stays true: every hop of "One order's walk" names a function that
exists where the page says (imported from its file's module), and every folder or module
the "Where things live" table names in backquotes exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
# | 4 | `services/points/src/points/orders/endpoints.py` | `record_order` | ... |
HOP = re.compile(r"^\|\s*(\d+)\s*\|\s*`([^`]+\.py)`\s*\|\s*`([\w.]+)`\s*\|")


def _section(title: str) -> list[str]:
    lines = DOC.read_text().splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def _module_of(path: str) -> str:
    """``services/points/src/points/orders/endpoints.py`` -> ``points.orders.endpoints``."""
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[parts.index("src") + 1 :])


def hops() -> list[tuple[int, str, str]]:
    return [
        (int(m[1]), m[2], m[3]) for line in _section("One order's walk") if (m := HOP.match(line))
    ]


def test_the_walk_is_twelve_hops_or_fewer_in_order() -> None:
    numbers = [n for n, _, _ in hops()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert 5 <= len(numbers) <= 12


def test_every_hop_names_a_function_that_exists_in_its_file() -> None:
    missing = []
    for n, path, name in hops():
        assert (ROOT / path).is_file(), f"hop {n}: no file {path}"
        target: object = importlib.import_module(_module_of(path))
        for attr in name.split("."):
            target = getattr(target, attr, None)
            if target is None:
                break
        if not callable(target):
            missing.append(f"hop {n}: {path} has no function {name}")
    assert not missing, "docs/architecture.md names functions that are gone: " + "; ".join(missing)


def test_the_places_the_map_names_exist() -> None:
    services = {
        "points": "services/points/src/points",
        "segmentation": "services/segmentation/src/segmentation",
        "feedback": "services/feedback/src/feedback",
        "gateway": "services/gateway/src/gateway",
        "webhooks": "services/webhooks/src/webhooks",
        "loyalty_shared": "shared/src/loyalty_shared",
    }
    gone = []
    for line in _section("Where things live") + _section("The rooms of a feature folder"):
        for ref in re.findall(
            r"`((?:points|segmentation|feedback|gateway|webhooks|loyalty_shared)/[^`]*)`", line
        ):
            head, _, rest = ref.partition("/")
            if not (ROOT / services[head] / rest).exists():
                gone.append(ref)
    assert not gone, f"docs/architecture.md names places that do not exist: {gone}"
