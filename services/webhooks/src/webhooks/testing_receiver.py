"""A real HTTP receiver on loopback for the tests: it records what it is sent, and each path
answers as the test says (200, fail N times, hang, hold until released).

Served by uvicorn on a socket of its own, in the test's event loop. A receiver dedupes by
the event id, as docs/webhooks.md asks of shops: ``effects`` counts each id once.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event_id(self) -> str:
        return self.headers["loyalty-webhook-id"]


@dataclass
class Behaviour:
    """How one path answers: ``fail_first`` non-2xx answers per event id, then 200; ``hang``:
    never answers (until the receiver stops); ``hold``: waits for ``release`` first."""

    fail_first: int = 0
    status: int = 500
    hang: bool = False
    hold: asyncio.Event | None = None
    failures: Counter[str] = field(default_factory=Counter)


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.effects: Counter[str] = Counter()  # per path: events applied once by id
        self.applied: set[tuple[str, str]] = set()
        self.arrived = asyncio.Event()
        self._closing = asyncio.Event()
        self.base_url = ""

    def url(self, path: str, **behaviour: object) -> str:
        self.behaviours[path] = Behaviour(**behaviour)  # type: ignore[arg-type]
        return f"{self.base_url}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def about(self, path: str, member: str) -> list[Received]:
        """What arrived at ``path`` about ``member`` (the event's subject): the suite shares
        one broker, so another test's events of a subscribed type may arrive too."""
        return [r for r in self.at(path) if json.loads(r.body).get("subject") == member]

    def ids(self, path: str) -> list[str]:
        return [r.event_id for r in self.at(path)]

    async def _handle(self, request: Request) -> PlainTextResponse:
        got = Received(
            request.url.path,
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        self.received.append(got)
        self.arrived.set()
        behaviour = self.behaviours.get(got.path, Behaviour())
        if behaviour.hang:
            await self._closing.wait()
            return PlainTextResponse("too late", status_code=503)
        if behaviour.hold is not None:
            await behaviour.hold.wait()
        if behaviour.failures[got.event_id] < behaviour.fail_first:
            behaviour.failures[got.event_id] += 1
            return PlainTextResponse("not now", status_code=behaviour.status)
        if (got.path, got.event_id) not in self.applied:  # the receiver's dedupe by id
            self.applied.add((got.path, got.event_id))
            self.effects[got.path] += 1
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Receiver]:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        # the socket listens already: a request sent before uvicorn serves waits in its backlog
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield self
        finally:
            self._closing.set()
            for b in self.behaviours.values():
                if b.hold is not None:
                    b.hold.set()
            server.should_exit = True
            await asyncio.wait({task}, timeout=5)
            sock.close()


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver().serving() as r:
        yield r
