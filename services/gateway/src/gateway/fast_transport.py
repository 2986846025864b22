"""A lean HTTP/1.1 transport for httpx: an asyncio protocol, the httptools parser, keep-alive pool.

The gateway's upstream calls go through one ``httpx.AsyncClient``; this transport
replaces httpcore under it because httpcore costs about a millisecond of CPU per
request, which is most of what the gateway adds. It speaks only what the gateway
needs: plain HTTP/1.1 to the services, whole request bodies, whole responses.
A connection goes back to the pool only after a complete, keep-alive response;
anything else (error, timeout, cancellation, HEAD, ``Connection: close``) closes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import httptools
import httpx

_SKIP_REQUEST_HEADERS = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}
)
_BODYLESS_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})


class _Answer:
    """One response as it arrives: the httptools parser's callbacks, and a future that is
    done once the answer is whole (or, for HEAD, once its head is), or has failed.

    It holds no reference to its parser (the connection does): no reference cycle, so the
    answer is freed as soon as it is used, without the garbage collector."""

    def __init__(self, done: asyncio.Future[None], head_only: bool) -> None:
        self.done = done
        self.head_only = head_only
        self.status = 0
        self.http_version = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headers_complete = False
        self.complete = False
        self.has_length = False  # Content-Length, or a chunked Transfer-Encoding
        self.asks_to_close = False  # Connection: close

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length":
            self.has_length = True
        elif lowered == b"transfer-encoding":
            self.has_length = self.has_length or b"chunked" in value.lower()
        elif lowered == b"connection":
            self.asks_to_close = self.asks_to_close or b"close" in value.lower()

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        if self.head_only:
            self.finish()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.finish()

    # what the connection tells
    def ended(self, exc: BaseException | None) -> None:
        """The service closed the connection (``exc``: or it broke)."""
        if exc is not None:
            self.fail(httpx.ReadError(str(exc)))
        elif self.headers_complete and not self.has_length:
            self.finish()  # a body delimited by the end of the connection
        else:
            self.fail(
                httpx.RemoteProtocolError("the service closed the connection before answering")
            )

    def reusable(self) -> bool:
        """A whole keep-alive answer: the connection may carry the next request."""
        return (
            self.complete
            and not self.head_only
            and self.http_version == "1.1"
            and not self.asks_to_close
            and (self.has_length or self.status in (204, 304))
        )

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class _Connection(asyncio.Protocol):
    """One connection to a service; the answer in progress (if any) reads its bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: _Answer | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.lost = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's

    def expect(self, answer: _Answer) -> None:
        """The next bytes are ``answer``'s."""
        self.answer = answer
        self.parser = httptools.HttpResponseParser(answer)

    def answered(self) -> None:
        """The exchange is over (the answer whole, or given up)."""
        if self.answer is not None and self.parser is not None:
            self.answer.status = self.parser.get_status_code()
            self.answer.http_version = self.parser.get_http_version()
        self.answer = None
        self.parser = None

    def data_received(self, data: bytes) -> None:
        if self.answer is None or self.parser is None:
            self.close()  # bytes no request asked for: never reuse this connection
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.answer.fail(httpx.RemoteProtocolError(str(exc)))

    def eof_received(self) -> bool:
        if self.answer is not None:
            self.answer.ended(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.answer is not None:
            self.answer.ended(exc)

    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class RawResponse:
    """A whole upstream answer, headers as sent (``send_raw``: no httpx models on the way)."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    content: bytes


class FastTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        max_connections: int = 200,
        connect_timeout: float = 2.0,
        max_idle_seconds: float = 4.0,
    ) -> None:
        """``max_idle_seconds`` stays below the services' keep-alive timeout (uvicorn: 5 s), so
        a pooled connection is not reused just as the service closes it."""
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.max_idle_seconds = max_idle_seconds
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol("the fast transport speaks plain http only")
        host = url.host
        port = url.port or 80
        timeout = request.extensions.get("timeout", {})
        raw = await self.send_raw(
            request.method,
            host,
            port,
            url.raw_path,
            request.headers.raw,
            request.content,
            connect_timeout=timeout.get("connect"),
            request=request,
        )
        return httpx.Response(
            raw.status_code,
            headers=raw.headers,
            content=raw.content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def send_raw(
        self,
        method: str,
        host: str,
        port: int,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        *,
        connect_timeout: float | None = None,
        request: httpx.Request | None = None,
    ) -> RawResponse:
        """One exchange without httpx models (the gateway's hot path); errors are httpx's."""
        key = (host, port)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self.max_connections)
        payload = _serialise(method, target, host, port, headers, body, request)
        async with slots:
            conn = self._take_idle(key)
            if conn is None:
                conn = await self._connect(
                    request, host, port, connect_timeout or self.connect_timeout
                )
            reusable = False
            try:
                answer = await self._exchange(conn, method, payload, request)
                reusable = answer.reusable()
            finally:
                if reusable:
                    conn.idle_since = time.monotonic()
                    self._idle.setdefault(key, []).append(conn)
                else:
                    conn.close()
        body_parts = answer.body
        content = body_parts[0] if len(body_parts) == 1 else b"".join(body_parts)
        return RawResponse(answer.status, answer.headers, content)

    def _take_idle(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable() and now - conn.idle_since < self.max_idle_seconds:
                return conn
            conn.close()
        return None

    async def _connect(
        self, request: httpx.Request | None, host: str, port: int, timeout: float
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, conn = await loop.create_connection(_Connection, host, port)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc}", request=request) from exc
        conn.transport = transport  # (uvloop may call connection_made only after this)
        return conn

    async def _exchange(
        self, conn: _Connection, method: str, payload: bytes, request: httpx.Request | None
    ) -> _Answer:
        """Send the request and wait for the whole answer (for HEAD: its head)."""
        answer = _Answer(asyncio.get_running_loop().create_future(), head_only=method == "HEAD")
        conn.expect(answer)
        assert conn.transport is not None
        try:
            conn.transport.write(payload)  # a failed write ends the connection: a ReadError
        except OSError as exc:
            raise httpx.WriteError(str(exc), request=request) from exc
        try:
            await answer.done
        except httpx.TransportError as exc:
            if request is not None:
                exc.request = request
            raise
        finally:
            conn.answered()
        return answer

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _serialise(
    method: str,
    target: bytes,
    host: str,
    port: int,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    request: httpx.Request | None,
) -> bytes:
    raw_method = method.encode("ascii")
    authority = host if port == 80 else f"{host}:{port}"
    lines = [raw_method + b" " + target + b" HTTP/1.1", b"host: " + authority.encode()]
    lines.extend(
        name + b": " + value for name, value in headers if name.lower() not in _SKIP_REQUEST_HEADERS
    )
    if body or raw_method not in _BODYLESS_METHODS:
        lines.append(b"content-length: " + str(len(body)).encode())
    head = b"\r\n".join(lines)
    # One scan of the whole head: a CR, LF or NUL inside a line would split or end it.
    separators = len(lines) - 1
    if head.count(b"\r") != separators or head.count(b"\n") != separators or b"\0" in head:
        raise httpx.LocalProtocolError("illegal character in a request header", request=request)
    return head + b"\r\n\r\n" + body
