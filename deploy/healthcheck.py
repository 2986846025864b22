"""Container healthcheck: GET /health on this service's own port; exit 0 when it answers 200.

Python's standard library only: the slim base image has no curl. The port is the one the
service listens on: ``<SERVICE>_PORT`` when set (compose sets it), else the Settings default.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

# the defaults of each service's Settings.port (tests/test_compose.py keeps them in step)
DEFAULT_PORTS = {
    "gateway": 8000,
    "points": 8001,
    "segmentation": 8002,
    "feedback": 8003,
    "webhooks": 8004,
}


def health_url(environ: Mapping[str, str]) -> str:
    service = environ.get("SERVICE", "")
    if service not in DEFAULT_PORTS:
        raise SystemExit(
            f"healthcheck: SERVICE must be one of {sorted(DEFAULT_PORTS)}, got {service!r}"
        )
    port = int(environ.get(f"{service.upper()}_PORT") or DEFAULT_PORTS[service])
    return f"http://127.0.0.1:{port}/health"


def main() -> int:
    url = health_url(os.environ)
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (loopback, fixed scheme)
            status = response.status
    except (OSError, urllib.error.URLError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
