"""The webhook HTTP client: HTTP/1.1 requests on kept-alive connections, nothing more.

Why not aiohttp's client, which the bridge used before: on this project's bench
(bench/http_client.py) one aiohttp request costs ~280 µs of CPU, one of these ~90 µs
(a bare asyncio stream: ~55 µs), and at 500 calls/s the bridge sends ~3,000 webhooks/s
from one core. A webhook needs little of what a general client does: no redirects (a
3xx is an answer, never followed), no cookies, no proxies, no compression, no streaming
uploads. What it does:

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
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

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


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


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
                conn.writer.close()

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
                      max_body: int = 65536) -> int:  # fmt: skip
        """Send one request and return the answer's status (reading at most ``max_body``
        bytes of its body)."""
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
        lines = [f"{method} {target} HTTP/1.1\r\n{first_lines}"]
        for k, v in headers.items():
            if "\n" in v or "\r" in v or "\n" in k or "\r" in k:
                raise ValueError(f"header {k!r}: a line break would split the request")
            lines.append(f"{k}: {v}\r\n")
        if body or method != "GET":
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        key = (scheme, host, port)
        for attempt in (1, 2):
            conn = self._take(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(scheme, host, port, connect_timeout)
            try:
                conn.writer.write(head + body if body else head)
                status, keep = await self._answer(conn.reader, method, read_timeout, max_body)
            except ServerDisconnectedError:
                conn.writer.close()
                if reused and attempt == 1:
                    continue  # the receiver closed an idle connection: once more, on a new one
                raise
            except BaseException:
                conn.writer.close()
                raise
            if keep:
                self._give_back(key, conn)
            else:
                conn.writer.close()
            return status
        raise AssertionError("unreachable")

    def _take(self, key: tuple[str, str, int]) -> _Conn | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn
            conn.writer.close()
        return None

    def _give_back(self, key: tuple[str, str, int], conn: _Conn) -> None:
        conns = self._idle.setdefault(key, [])
        if len(conns) < MAX_IDLE:
            conns.append(conn)
        else:
            conn.writer.close()

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
        for addr in addresses:
            try:
                async with asyncio.timeout(timeout):
                    reader, writer = await asyncio.open_connection(
                        addr, port, ssl=tls, server_hostname=host if tls else None
                    )
            except (OSError, TimeoutError) as err:
                last = err
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _Conn(reader, writer)
        what = f"{type(last).__name__}: {last}" if last else "no address"
        raise ClientConnectorError(f"cannot connect to {host}:{port} ({what})") from last

    async def _answer(self, reader: asyncio.StreamReader, method: str, read_timeout: float,
                      max_body: int) -> tuple[int, bool]:  # fmt: skip
        """Read an answer: (status, whether the connection can be used again)."""
        async with asyncio.timeout(read_timeout) as deadline:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as err:
                raise ServerDisconnectedError("the receiver closed the connection without an answer") from err
            except asyncio.LimitOverrunError as err:
                raise ResponseError("the answer's headers are too long") from err
            except ConnectionError as err:
                raise ServerDisconnectedError(f"the connection broke: {err}") from err
            lines = head.split(b"\r\n")
            version, _, rest = lines[0].partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise ResponseError(f"not an HTTP/1.x answer: {lines[0][:60]!r}")
            status = int(code)
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
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                return status, keep and status >= 200
            try:
                if chunked:
                    whole = await self._chunks(reader, max_body, deadline, read_timeout)
                    return status, keep and whole
                if length is not None:
                    if length > max_body:
                        await reader.readexactly(max_body)
                        return status, False
                    await reader.readexactly(length)
                    return status, keep
                await reader.read(max_body)  # ended by close: never reusable
                return status, False
            except asyncio.IncompleteReadError as err:
                raise ServerDisconnectedError("the receiver closed the connection mid-answer") from err
            except ConnectionError as err:
                raise ServerDisconnectedError(f"the connection broke: {err}") from err

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader, max_body: int, deadline: asyncio.Timeout,
                      read_timeout: float) -> bool:  # fmt: skip
        """Read a chunked body up to ``max_body`` bytes: True when read whole."""
        got = 0
        clock = asyncio.get_running_loop().time
        while True:
            deadline.reschedule(clock() + read_timeout)
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as err:
                raise ResponseError(f"bad chunk size: {line[:30]!r}") from err
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return True
            if got + size > max_body:
                return False
            await reader.readexactly(size + 2)
            got += size


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
                      max_body: int = 65536) -> int:  # fmt: skip
        aiohttp = self._aiohttp
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        try:
            async with self._session.request(method, url, data=body or None, headers=headers,
                                             timeout=timeout, allow_redirects=False) as resp:  # fmt: skip
                await resp.content.read(max_body)
                return int(resp.status)
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
