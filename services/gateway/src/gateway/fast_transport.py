"""A lean HTTP/1.1 transport for httpx: asyncio streams, the httptools parser, keep-alive pool.

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
from dataclasses import dataclass, field

import httptools
import httpx

_SKIP_REQUEST_HEADERS = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}
)
_BODYLESS_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Parsed:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    headers_complete: bool = False
    complete: bool = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_complete = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


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
                parsed, reusable = await self._exchange(conn, method, payload, request)
            finally:
                if reusable:
                    conn.idle_since = time.monotonic()
                    self._idle.setdefault(key, []).append(conn)
                else:
                    conn.close()
        body_parts = parsed.body
        content = body_parts[0] if len(body_parts) == 1 else b"".join(body_parts)
        return RawResponse(parsed.status, parsed.headers, content)

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
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc}", request=request) from exc
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, method: str, payload: bytes, request: httpx.Request | None
    ) -> tuple[_Parsed, bool]:
        try:
            conn.writer.write(payload)
            await conn.writer.drain()
        except OSError as exc:
            raise httpx.WriteError(str(exc), request=request) from exc
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        head_only = method == "HEAD"
        while not parsed.complete:
            try:
                data = await conn.reader.read(65536)
            except OSError as exc:
                raise httpx.ReadError(str(exc), request=request) from exc
            if not data:
                if parsed.headers_complete and not _has_length(parsed.headers):
                    break  # a body delimited by the end of the connection
                raise httpx.RemoteProtocolError(
                    "the service closed the connection before answering", request=request
                )
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            if head_only and parsed.headers_complete:
                return _finish(parsed, parser), False
        _finish(parsed, parser)
        reusable = (
            parsed.complete
            and parser.get_http_version() == "1.1"
            and not _asks_to_close(parsed.headers)
            and not _has_length_eof(parsed)
        )
        return parsed, reusable

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


def _finish(parsed: _Parsed, parser: httptools.HttpResponseParser) -> _Parsed:
    parsed.status = parser.get_status_code()
    return parsed


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"content-length"
        or (name.lower() == b"transfer-encoding" and b"chunked" in value.lower())
        for name, value in headers
    )


def _asks_to_close(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"connection" and b"close" in value.lower() for name, value in headers
    )


def _has_length_eof(parsed: _Parsed) -> bool:
    return not _has_length(parsed.headers) and parsed.status not in (204, 304)
