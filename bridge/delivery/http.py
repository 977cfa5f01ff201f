"""The webhook HTTP client: HTTP/1.1 requests on kept-alive connections, nothing more.

Why not aiohttp's client, which the bridge used before: on this project's bench
(bench/http_client.py) one aiohttp request costs ~4-6x the CPU of one of these, and at
500 calls/s the bridge sends ~3,000 webhooks/s from one core. Each connection is an
asyncio protocol that frames the answer as its bytes arrive and resolves one future per
request (no stream reader in between), with one timer per request for the read timeout.

A webhook needs little of what a general client does: no redirects (a 3xx is an
answer, never followed), no cookies, no proxies, no compression, no streaming uploads.
What it does:

* ``http`` and ``https`` (certificates verified with the system's CA store);
* connections kept alive and reused per (scheme, host, port), at most one request on a
  connection at a time; an idle connection the receiver closed meanwhile is detected,
  and a request that finds its reused connection closed before any answer is sent once
  more on a new one (every request carries an idempotency key);
* names resolved by a resolver with aiohttp's interface (the SSRF guard), so only
  addresses that passed the guard are ever connected to;
* answers with ``Content-Length``, ``chunked`` or ended by close; at most ``max_body``
  bytes of a body are read (a connection whose body was not read whole is closed);
* a timeout to connect, and a timeout between reads (the caller bounds the whole).

Errors are raised as :class:`ClientConnectorError` (cannot connect),
:class:`ServerDisconnectedError` (closed before a complete answer),
:class:`ResponseError` (not HTTP), and TimeoutError: their names end up in
``last_error`` of failed deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import math
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from bridge.delivery.answer import BODY_KEPT, Answer, retry_after_seconds
from bridge.delivery.guard import SsrfBlocked, is_ip

DEFAULT_PORTS = {"http": 80, "https": 443}
#: idle connections kept per (scheme, host, port)
MAX_IDLE = 32


class HttpError(Exception):
    """A request got no usable answer."""


class ClientConnectorError(HttpError):
    """No connection could be made."""


class ServerDisconnectedError(HttpError):
    """The receiver closed the connection before a complete answer."""


class ResponseError(HttpError):
    """The answer is not HTTP/1.x."""


class Resolver(Protocol):
    """What :class:`bridge.delivery.guard.GuardedResolver` offers (aiohttp's interface)."""

    async def resolve(
        self, host: str, port: int = ..., family: socket.AddressFamily = ...
    ) -> Sequence[Mapping[str, Any]]: ...


#: the longest answer head read (asyncio streams' own limit)
MAX_HEAD = 65536


class _Conn(asyncio.Protocol):
    """One connection: sends a request and parses its answer as the bytes arrive.

    An asyncio protocol rather than a stream reader: the answer is framed in
    :meth:`data_received` and one future per request is resolved with ``(status,
    reusable)``, without a reader's buffer copies and waits per header and body.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        #: loop time of the last bytes received (the read timeout runs from it)
        self.last_read = 0.0
        self._loop = asyncio.get_running_loop()
        self._buf = b""
        self._waiter: asyncio.Future[tuple[int, bool]] | None = None
        self._method = ""
        self._max_body = 0
        #: of the answer being read, once its head is in: status, keep-alive, length, chunked
        self._head: tuple[int, bool, int | None, bool] | None = None
        self._got = 0  # chunked: body bytes so far
        #: the last answer's Retry-After (raw) and first BODY_KEPT bytes of its body
        self.retry_after: str | None = None
        self.body_head = b""
        self._read_timeout = 0.0
        #: loop time by which the answer must be complete (inf: no limit)
        self._deadline = math.inf
        #: watches the request in flight; armed by a send when none is, left to fire once
        #: the answer is in (then it finds nothing to watch): no timer per request
        self._timer: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is not reusable
            self.abort()
            return
        self._buf = self._buf + data if self._buf else data
        self.last_read = self._loop.time()
        try:
            done = self._parse()
        except ResponseError as err:
            self._fail(err)
            self.abort()
            return
        if done is not None:
            status, keep = done
            if self._buf:  # more than the answer: never reuse what is out of step
                keep = False
            self._resolve(status, keep)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        head = self._head
        if head is not None and head[2] is None and not head[3]:
            self.body_head = self._buf[:BODY_KEPT]
            self._resolve(head[0], False)  # a body ended by close: this is its end
        elif exc is not None:
            self._fail(ServerDisconnectedError(f"the connection broke: {exc}"))
        elif head is None:
            self._fail(ServerDisconnectedError("the receiver closed the connection without an answer"))
        else:
            self._fail(ServerDisconnectedError("the receiver closed the connection mid-answer"))

    # ---- requests --------------------------------------------------------------------

    def send(self, data: bytes, method: str, max_body: int, read_timeout: float,
             deadline: float = math.inf) -> asyncio.Future[tuple[int, bool]]:  # fmt: skip
        """Write a request; the future gets ``(status, reusable)`` once its answer is in,
        or TimeoutError when nothing arrived for ``read_timeout`` seconds or the answer
        is not complete at ``deadline`` (loop time)."""
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter = self._loop.create_future()
        self._method, self._max_body = method, max_body
        self._head, self._got, self._buf = None, 0, b""
        self.retry_after, self.body_head = None, b""
        self.last_read = now = self._loop.time()
        self._read_timeout, self._deadline = read_timeout, deadline
        due = min(now + read_timeout, deadline)
        timer = self._timer
        if timer is None or timer.when() > due:  # else the armed one fires first and looks
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(due, self._check_read)
        self.transport.write(data)
        return waiter

    def abort(self) -> None:
        self._done()
        self._stop_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self._stop_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_read(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # the answer came in: nothing to watch until the next send arms it again
        due = min(self.last_read + self._read_timeout, self._deadline)
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_read)
            return
        if due == self._deadline:
            error = TimeoutError("the answer took longer than the total timeout")
        else:
            error = TimeoutError(f"nothing received for {self._read_timeout:g} s")
        self._fail(error)
        self.abort()

    def _done(self) -> asyncio.Future[tuple[int, bool]] | None:
        """The request's future (None if none), no longer waited for here."""
        waiter, self._waiter = self._waiter, None
        return waiter if waiter is not None and not waiter.done() else None

    def _resolve(self, status: int, keep: bool) -> None:
        waiter = self._done()
        if waiter is not None:
            waiter.set_result((status, keep))

    def _fail(self, error: BaseException) -> None:
        waiter = self._done()
        if waiter is not None:
            waiter.set_exception(error)

    def _parse(self) -> tuple[int, bool] | None:
        """The answer's ``(status, reusable)`` once complete (consumed from the buffer)."""
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise ResponseError("the answer's headers are too long")
                return None
            head, self._buf = self._buf[:end], self._buf[end + 4 :]
            self._head = _parse_head(head)
            self.retry_after = _retry_after(head)
            status, keep, _, _ = self._head
            if self._method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                return status, keep and status >= 200
        status, keep, length, chunked = self._head
        buf, max_body = self._buf, self._max_body
        if chunked:
            return self._chunks(status, keep)
        if length is not None:
            if length > max_body:
                if len(buf) < max_body:
                    return None
                self._buf, self.body_head = b"", buf[:BODY_KEPT]
                return status, False
            if len(buf) < length:
                return None
            self._buf, self.body_head = buf[length:], buf[: min(length, BODY_KEPT)]
            return status, keep
        if len(buf) >= max_body:  # ended by close: read enough of it, never reusable
            self._buf, self.body_head = b"", buf[:BODY_KEPT]
            return status, False
        return None

    def _chunks(self, status: int, keep: bool) -> tuple[int, bool] | None:
        """A chunked body, consumed chunk by chunk up to ``max_body`` bytes."""
        buf = self._buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                self._buf = buf
                return None
            try:
                size = int(buf[:eol].split(b";", 1)[0].strip(), 16)
            except ValueError as err:
                raise ResponseError(f"bad chunk size: {buf[:eol][:30]!r}") from err
            if size == 0:  # then trailers, up to an empty line
                if buf.startswith(b"\r\n", eol + 2):
                    self._buf = buf[eol + 4 :]
                    return status, keep
                end = buf.find(b"\r\n\r\n", eol + 2)
                if end < 0:
                    self._buf = buf
                    return None
                self._buf = buf[end + 4 :]
                return status, keep
            if self._got + size > self._max_body:
                self._buf = b""
                return status, False
            if len(buf) < eol + 2 + size + 2:
                self._buf = buf
                return None
            if len(self.body_head) < BODY_KEPT:
                self.body_head = (self.body_head + buf[eol + 2 : eol + 2 + size])[:BODY_KEPT]
            buf = buf[eol + 2 + size + 2 :]
            self._got += size


def _retry_after(head: bytes) -> str | None:
    """The raw Retry-After of an answer's head, if it has one."""
    if b"etry-" not in head and b"ETRY-" not in head:
        return None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            return value.strip().decode("latin-1")
    return None


def _parse_head(head: bytes) -> tuple[int, bool, int | None, bool]:
    """An answer's status line and headers: (status, keep-alive, Content-Length, chunked)."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        raise ResponseError(f"not an HTTP/1.x answer: {lines[0][:60]!r}")
    keep = version == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError as err:
                raise ResponseError(f"bad Content-Length: {value.strip()[:30]!r}") from err
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep = token != b"close" and (keep or token == b"keep-alive")
    return int(code), keep, length, chunked


class WebhookClient:
    """Send requests; keep connections. ``async with WebhookClient() as client``."""

    def __init__(self, resolver: Resolver | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.resolver = resolver
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._parsed: dict[str, tuple[str, str, int, str]] = {}

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _split(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, first header lines) of a URL (the base is cached): Host,
        and Authorization when the URL carries ``user:password@`` (as aiohttp did)."""
        base = url.split("?", 1)[0]
        got = self._parsed.get(base)
        if got is None:
            try:
                parts = urlsplit(base)
                port = parts.port
            except ValueError as err:
                raise ClientConnectorError(f"cannot send to {url!r}: {err}") from err
            scheme = parts.scheme.lower()
            if scheme not in DEFAULT_PORTS or not parts.hostname:
                raise ClientConnectorError(f"cannot send to {url!r}: not an http(s) URL with a host")
            port = port or DEFAULT_PORTS[scheme]
            host = parts.hostname
            if not host.isascii():
                host = host.encode("idna").decode("ascii")
            shown = f"[{host}]" if ":" in host else host
            lines = f"Host: {shown if port == DEFAULT_PORTS[scheme] else f'{shown}:{port}'}\r\n"
            if parts.username is not None:
                user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                lines += f"Authorization: Basic {base64.b64encode(user.encode()).decode()}\r\n"
            got = (scheme, host, port, lines)
            if len(self._parsed) >= 10_000:
                self._parsed.clear()
            self._parsed[base] = got
        return got

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"", *,
                      connect_timeout: float = 10.0, read_timeout: float = 10.0,
                      max_body: int = 65536, total_timeout: float | None = None) -> Answer:  # fmt: skip
        """Send one request and return the answer (reading at most ``max_body``
        bytes of its body); TimeoutError past ``total_timeout`` seconds in all (name
        resolution, connection, request and answer), if given."""
        loop = asyncio.get_running_loop()
        deadline = math.inf if total_timeout is None else loop.time() + total_timeout
        scheme, host, port, first_lines = self._split(url)
        rest = url.split("://", 1)[1]
        slash = rest.find("/")
        query = rest.find("?")
        if slash < 0 or 0 <= query < slash:
            target = "/" + (rest[query:] if query >= 0 else "")
        else:
            target = rest[slash:].split("#", 1)[0]
        if not target.isascii():
            target = quote(target, safe="/?&=%:@!$'()*+,;~-._[]")
        fields = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
            bad = next(k for k, v in headers.items() if "\n" in k + v or "\r" in k + v)
            raise ValueError(f"header {bad!r}: a line break would split the request")
        length = f"Content-Length: {len(body)}\r\n" if body or method != "GET" else ""
        head = f"{method} {target} HTTP/1.1\r\n{first_lines}{fields}{length}\r\n".encode("latin-1")
        data = head + body if body else head
        key = (scheme, host, port)
        for attempt in (1, 2):
            conn = self._take(key)
            reused = conn is not None
            if conn is None:
                async with asyncio.timeout_at(None if deadline == math.inf else deadline):
                    conn = await self._connect(scheme, host, port, connect_timeout)
            try:
                status, keep = await conn.send(data, method, max_body, read_timeout, deadline)
            except ServerDisconnectedError:
                conn.abort()
                if reused and attempt == 1:
                    continue  # the receiver closed an idle connection: once more, on a new one
                raise
            except BaseException:  # a timeout, garbage, or the caller gave up (cancelled)
                conn.abort()
                raise
            answer = Answer(status, retry_after_seconds(conn.retry_after, time.time()), conn.body_head)
            if keep and not conn.closed:
                self._give_back(key, conn)
            else:
                conn.close()
            return answer
        raise AssertionError("unreachable")

    def _take(self, key: tuple[str, str, int]) -> _Conn | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if not conn.closed:
                return conn
            conn.close()
        return None

    def _give_back(self, key: tuple[str, str, int], conn: _Conn) -> None:
        conns = self._idle.setdefault(key, [])
        if len(conns) < MAX_IDLE:
            conns.append(conn)
        else:
            conn.close()

    async def _connect(self, scheme: str, host: str, port: int, timeout: float) -> _Conn:
        if is_ip(host) or self.resolver is None:
            addresses = [host]
        else:
            try:
                found = await self.resolver.resolve(host, port, socket.AF_UNSPEC)
            except SsrfBlocked:
                raise  # the caller names it
            except OSError as err:
                raise ClientConnectorError(f"cannot resolve {host} ({err})") from err
            addresses = [str(r["host"]) for r in found]
        tls = self._ssl_context() if scheme == "https" else None
        last: BaseException | None = None
        loop = asyncio.get_running_loop()
        for addr in addresses:
            try:
                async with asyncio.timeout(timeout):
                    _, conn = await loop.create_connection(
                        _Conn, addr, port, ssl=tls, server_hostname=host if tls else None
                    )
            except (OSError, TimeoutError) as err:
                last = err
                continue
            return conn  # (asyncio sets TCP_NODELAY on TCP transports)
        what = f"{type(last).__name__}: {last}" if last else "no address"
        raise ClientConnectorError(f"cannot connect to {host}:{port} ({what})") from last


class AiohttpClient:
    """The same interface over aiohttp's client (``delivery.client: aiohttp``): slower,
    but it honours ``HTTP_PROXY``/``HTTPS_PROXY`` from the environment. Its errors are
    raised under the names above (aiohttp's own names, which these were given after)."""

    def __init__(self, resolver: Any = None, limit: int = 100, trust_env: bool = True) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        connector = aiohttp.TCPConnector(limit=limit, resolver=resolver) if resolver else None
        # trust_env: proxies from the environment (and ~/.netrc), looked up per request
        self._session = aiohttp.ClientSession(connector=connector, trust_env=trust_env)

    async def __aenter__(self) -> AiohttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"", *,
                      connect_timeout: float = 10.0, read_timeout: float = 10.0,
                      max_body: int = 65536, total_timeout: float | None = None) -> Answer:  # fmt: skip
        aiohttp = self._aiohttp
        timeout = aiohttp.ClientTimeout(
            total=total_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        try:
            async with self._session.request(method, url, data=body or None, headers=headers,
                                             timeout=timeout, allow_redirects=False) as resp:  # fmt: skip
                body = await resp.content.read(max_body)
                retry_after = retry_after_seconds(resp.headers.get("Retry-After"), time.time())
                return Answer(int(resp.status), retry_after, body[:BODY_KEPT])
        except aiohttp.ClientConnectorError as err:
            cause: BaseException | None = err
            while cause is not None:  # the SSRF guard's refusal, if that is what it was
                if isinstance(cause, SsrfBlocked):
                    raise cause from err
                cause = getattr(cause, "os_error", None) or cause.__cause__
            raise ClientConnectorError(str(err)) from err
        except aiohttp.ServerDisconnectedError as err:
            raise ServerDisconnectedError(str(err)) from err
        except aiohttp.ClientError as err:
            raise HttpError(f"{type(err).__name__}: {err}") from err


def make_client(kind: str, resolver: Any = None, limit: int = 100) -> WebhookClient | AiohttpClient:
    """The client ``delivery.client`` names."""
    return AiohttpClient(resolver, limit) if kind == "aiohttp" else WebhookClient(resolver)
