"""The webhook HTTP client: HTTP/1.1 requests on kept-alive connections, nothing more.

Why not aiohttp's client, which the bridge used before: on this project's bench
(bench/http_client.py) one aiohttp request costs ~4-6x the CPU of one of these, and at
500 calls/s the bridge sends ~3,000 webhooks/s from one core. Each connection is an
asyncio protocol that frames the answer as its bytes arrive and resolves one future per
request (no stream reader in between), with one timer per request for the read timeout.
Answers are parsed by llhttp (Node.js's parser, fuzzed, through the ``httptools``
binding), never by hand.

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
* the answer is returned as an :class:`~bridge.delivery.answer.Answer`: status,
  ``Retry-After`` in seconds, and the body's first ``max_body`` bytes;
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
from typing import Any, Protocol, cast
from urllib.parse import quote, unquote, urlsplit

import httptools

from bridge.delivery.answer import Answer, retry_after_seconds
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


#: the longest answer head read (asyncio streams' own limit; llhttp sets none)
MAX_HEAD = 65536


class _Conn(asyncio.Protocol):
    """One connection: sends a request and parses its answer as the bytes arrive.

    An asyncio protocol rather than a stream reader: the answer is fed to llhttp (through
    httptools) in :meth:`data_received`, whose callbacks note the status, ``Retry-After``
    and the body's start, and one future per request is resolved with ``(answer,
    reusable)``, without a reader's buffer copies and waits per header and body.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        #: loop time of the last bytes received (the read timeout runs from it)
        self.last_read = 0.0
        self._loop = asyncio.get_running_loop()
        #: one parser per connection (llhttp resets itself between answers), replaced
        #: after an answer whose end it could not know (HEAD, 1xx)
        self._parser = httptools.HttpResponseParser(self)
        self._renew = False
        self._waiter: asyncio.Future[tuple[Answer, bool]] | None = None
        self._method = ""
        self._max_body = 0
        # of the answer being read
        self._fed = 0  # bytes received before the end of its head
        self._head_size = 0  # bytes of its headers
        self._start = b""  # its first bytes (to check the status line says HTTP/1.x)
        self._headers_done = False
        self._complete = False  # read to its end (or as far as it will be: HEAD, 1xx)
        self._extra = False  # bytes came after it: the connection is out of step
        self._keep = False
        self._status = 0
        self._framed = False  # has a Content-Length or is chunked (else: ended by close)
        self._retry_after: bytes | None = None
        self._body: list[bytes] = []
        self._got = 0  # body bytes received (kept: at most max_body)
        self._read_timeout = 0.0
        #: loop time by which the answer must be complete (inf: no limit)
        self._deadline = math.inf
        #: watches the request in flight; armed by a send when none is, left to fire once
        #: the answer is in (then it finds nothing to watch): no timer per request
        self._timer: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a TCP transport (uvloop's is one without being an asyncio.Transport subclass)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is not reusable
            self.abort()
            return
        self.last_read = self._loop.time()
        if not self._headers_done and len(self._start) < 8:
            self._start = (self._start + data)[:8]
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._extra = True  # an upgrade (101): whatever follows is not HTTP/1.1 any more
        except httptools.HttpParserError as err:
            if not self._complete:
                cause = err.__context__  # raised by a callback below
                self._fail(cause if isinstance(cause, ResponseError) else ResponseError(
                    f"not a valid HTTP/1.x answer ({err}): {self._start!r}..."))  # fmt: skip
                self.abort()
                return
            self._extra = True  # garbage after a complete answer: never reuse the connection
        if self._complete:
            self._resolve(self._keep and not self._extra)
        elif not self._headers_done:
            self._fed += len(data)
            if self._fed > MAX_HEAD:
                self._fail(ResponseError("the answer's headers are too long"))
                self.abort()
        elif self._got >= self._max_body:
            self._resolve(False)  # read enough of a long body: the rest is never read

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed:
            self._resolve(False)  # a body ended by close: this is its end
        elif exc is not None:
            self._fail(ServerDisconnectedError(f"the connection broke: {exc}"))
        elif not self._headers_done:
            self._fail(ServerDisconnectedError("the receiver closed the connection without an answer"))
        else:
            self._fail(ServerDisconnectedError("the receiver closed the connection mid-answer"))

    # ---- httptools' callbacks (called from feed_data) ----------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self._extra = True  # a second answer to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._complete:
            return
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD:  # (when the head came in whole at once)
            raise ResponseError("the answer's headers are too long")
        name = name.lower()
        if name == b"retry-after":
            self._retry_after = value
        elif name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        if self._complete:
            return  # of an answer after the answer: ignored (the connection is dropped)
        self._headers_done = True
        if not self._start.startswith(b"HTTP/1."):
            raise ResponseError(f"not an HTTP/1.x answer: {self._start!r}...")
        parser = self._parser
        self._keep = parser.should_keep_alive()
        self._status = status = parser.get_status_code()
        if self._method == "HEAD" or status < 200:
            # no body follows (llhttp cannot be told it answers a HEAD) or a final answer
            # is still to come (1xx): the answer is this, and the next one on this
            # connection goes to a new parser
            self._complete = self._framed = self._renew = True
            self._keep = self._keep and status >= 200

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        room = self._max_body - self._got
        if room > 0:
            self._body.append(body if len(body) <= room else body[:room])
        self._got += len(body)

    def on_message_complete(self) -> None:
        if not self._complete:
            self._complete = True
            self._framed = True

    # ---- requests --------------------------------------------------------------------

    def send(self, data: bytes, method: str, max_body: int, read_timeout: float,
             deadline: float = math.inf) -> asyncio.Future[tuple[Answer, bool]]:  # fmt: skip
        """Write a request; the future gets ``(answer, reusable)`` once its answer is in,
        or TimeoutError when nothing arrived for ``read_timeout`` seconds or the answer
        is not complete at ``deadline`` (loop time)."""
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter = self._loop.create_future()
        self._method, self._max_body = method, max_body
        if self._renew:
            self._parser, self._renew = httptools.HttpResponseParser(self), False
        self._fed, self._head_size, self._start, self._got, self._body = 0, 0, b"", 0, []
        self._retry_after = None
        self._headers_done = self._complete = self._extra = self._framed = False
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

    def _done(self) -> asyncio.Future[tuple[Answer, bool]] | None:
        """The request's future (None if none), no longer waited for here."""
        waiter, self._waiter = self._waiter, None
        return waiter if waiter is not None and not waiter.done() else None

    def _resolve(self, keep: bool) -> None:
        waiter = self._done()
        if waiter is not None:
            body, self._body = self._body, []
            after = self._retry_after
            answer = Answer(
                self._status,
                None if after is None else retry_after_seconds(after.decode("latin-1"), time.time()),
                body[0] if len(body) == 1 else b"".join(body),
            )
            waiter.set_result((answer, keep))

    def _fail(self, error: BaseException) -> None:
        waiter = self._done()
        if waiter is not None:
            waiter.set_exception(error)


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
        """Send one request and return its answer (status, ``Retry-After``, and at most
        ``max_body`` bytes of its body, all that is read of it); TimeoutError past
        ``total_timeout`` seconds in all (name resolution, connection, request and
        answer), if given."""
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
                answer, keep = await conn.send(data, method, max_body, read_timeout, deadline)
            except ServerDisconnectedError:
                conn.abort()
                if reused and attempt == 1:
                    continue  # the receiver closed an idle connection: once more, on a new one
                raise
            except BaseException:  # a timeout, garbage, or the caller gave up (cancelled)
                conn.abort()
                raise
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
                parts: list[bytes] = []
                got = 0
                while got < max_body:  # one read may give less than is on its way
                    part = await resp.content.read(max_body - got)
                    if not part:
                        break
                    parts.append(part)
                    got += len(part)
                after = resp.headers.get("Retry-After")
                return Answer(int(resp.status), retry_after_seconds(after, time.time()), b"".join(parts))
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
