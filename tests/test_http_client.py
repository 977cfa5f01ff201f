"""The webhook HTTP client against real servers on loopback: framing, keep-alive, TLS."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.delivery.guard import GuardedResolver, SsrfBlocked, parse_networks
from bridge.delivery.http import ResponseError, ServerDisconnectedError, WebhookClient, make_client

Script = Callable[[bytes], bytes]


class Scripted:
    """A raw HTTP server: each request (head + Content-Length body) gets ``answer(request)``;
    ``close_after`` closes the connection after that many answers (without saying so)."""

    def __init__(self, answer: Script, close_after: int = 0, mute_after: int = 0) -> None:
        self.answer, self.close_after, self.mute_after = answer, close_after, mute_after
        self.requests: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if self.mute_after and answered >= self.mute_after:
                    break  # read the request, close without a word
                writer.write(self.answer(head + body))
                await writer.drain()
                answered += 1
                if self.close_after and answered >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., asyncio.Future[tuple[Scripted, str]]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Script, close_after: int = 0, mute_after: int = 0) -> tuple[Scripted, str]:
        s = Scripted(answer, close_after, mute_after)
        server = await asyncio.start_server(s.serve, "127.0.0.1", 0)
        servers.append(server)
        return s, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def ok(body: bytes = b"ok", extra: bytes = b"") -> Script:
    return lambda _req: b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def test_keep_alive_reuses_one_connection(scripted: Callable[..., object]) -> None:
    """Twenty sequential requests go over one connection, each framed exactly."""
    server, url = await scripted(ok())  # type: ignore[operator]
    async with WebhookClient() as client:
        for i in range(20):
            assert (await client.request("POST", f"{url}/hook", {"X-N": str(i)}, b"a=%d" % i)).status == 200
    assert server.connections == 1
    assert server.requests[3].startswith(b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-N: 3\r\nContent-Length: 3\r\n\r\na=3" in server.requests[3]


async def test_a_connection_closed_while_idle_is_replaced_without_an_error(
    scripted: Callable[..., object],
) -> None:
    """The receiver drops every connection after one answer (no 'Connection: close'): the
    next request notices and goes out on a new connection."""
    server, url = await scripted(ok(), close_after=1)  # type: ignore[operator]
    async with WebhookClient() as client:
        for _ in range(5):
            assert (await client.request("POST", url + "/", {}, b"x")).status == 200
            await asyncio.sleep(0.01)
    assert server.connections == 5 and len(server.requests) == 5


async def test_a_reused_connection_closed_under_a_request_is_retried_once(
    scripted: Callable[..., object],
) -> None:
    """The receiver takes a second request on a kept-alive connection and closes without
    answering (its idle timeout raced the request): the client sends it again on a new
    connection; on a fresh connection the same thing is an error."""
    server, url = await scripted(ok(), mute_after=1)  # type: ignore[operator]
    async with WebhookClient() as client:
        assert (await client.request("POST", url, {}, b"1")).status == 200
        assert (await client.request("POST", url, {}, b"2")).status == 200
    assert server.connections == 2 and [r[-1:] for r in server.requests] == [b"1", b"2", b"2"]
    server, url = await scripted(ok(), mute_after=-1)  # type: ignore[operator]
    async with WebhookClient() as client:
        with pytest.raises(ServerDisconnectedError):
            await client.request("POST", url, {}, b"1")
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            True,
        ),
        (b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n", True),
    ],
)
async def test_answers_are_framed_and_keep_alive_is_honoured(
    scripted: Callable[..., object], answer: bytes, reused: bool
) -> None:
    server, url = await scripted(lambda _r: answer)  # type: ignore[operator]
    async with WebhookClient() as client:
        status = int(answer[9:12])
        assert (await client.request("POST", url, {}, b"x")).status == status
        assert (await client.request("POST", url, {}, b"y")).status == status
    assert server.connections == (1 if reused else 2)


async def test_a_huge_body_is_not_read_and_its_connection_not_reused(scripted: Callable[..., object]) -> None:
    server, url = await scripted(ok(b"z" * 200_000))  # type: ignore[operator]
    async with WebhookClient() as client:
        assert (await client.request("POST", url, {}, b"x", max_body=1000)).status == 200
        assert (await client.request("POST", url, {}, b"x", max_body=1000)).status == 200
    assert server.connections == 2


async def test_garbage_and_silence_are_errors(scripted: Callable[..., object]) -> None:
    _, garbage = await scripted(lambda _r: b"SSH-2.0-OpenSSH\r\n\r\n")  # type: ignore[operator]
    _, mute = await scripted(lambda _r: b"", close_after=1)  # type: ignore[operator]
    async with WebhookClient() as client:
        with pytest.raises(ResponseError):
            await client.request("POST", garbage, {}, b"x")
        with pytest.raises(ServerDisconnectedError):
            await client.request("POST", mute, {}, b"x")


async def test_get_targets_and_odd_paths(scripted: Callable[..., object]) -> None:
    """GET has no body; the query is kept; a URL without a path asks for '/'; a
    non-ASCII path is percent-encoded; a fragment is never sent."""
    server, url = await scripted(ok())  # type: ignore[operator]
    async with WebhookClient() as client:
        await client.request("GET", f"{url}?a=1&b=2", {})
        await client.request("GET", f"{url}/crm/hook?myid=175&x=%D0%AF", {})
        await client.request("POST", f"{url}/путь#frag", {}, b"x")
    first = [r.split(b"\r\n", 1)[0] for r in server.requests]
    assert first == [b"GET /?a=1&b=2 HTTP/1.1", b"GET /crm/hook?myid=175&x=%D0%AF HTTP/1.1",
                     b"POST /%D0%BF%D1%83%D1%82%D1%8C HTTP/1.1"]  # fmt: skip
    assert b"Content-Length" not in server.requests[0]


async def test_an_aiohttp_server_understands_it() -> None:
    """A real HTTP server framework gets the method, path, headers and form body."""
    got: list[tuple[str, str, str, dict[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(
            (request.method, request.path_qs, request.headers["Idempotency-Key"], dict(await request.post()))
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with WebhookClient() as client:
            headers = {"Idempotency-Key": "7-1", "Content-Type": "application/x-www-form-urlencoded"}
            answer = await client.request(
                "POST", f"http://127.0.0.1:{server.port}/h?q=1", headers, b"A=%D0%AF&B=2"
            )
            assert answer.status == 200
    finally:
        await server.close()
    assert got == [("POST", "/h?q=1", "7-1", {"A": "Я", "B": "2"})]


async def test_https_with_certificate_checks(tmp_path: Path) -> None:
    """TLS: a server with a certificate the client trusts is reached; the same server is
    refused by a client with the default (system) trust store."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    s = Scripted(ok())
    server = await asyncio.start_server(s.serve, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with WebhookClient(ssl_context=trusting) as client:
            assert (await client.request("POST", url, {}, b"x")).status == 200
            assert (await client.request("POST", url, {}, b"y")).status == 200
        async with WebhookClient() as client:
            with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                await client.request("POST", url, {}, b"x")
    finally:
        server.close()
    assert s.connections >= 1 and len(s.requests) == 2


async def test_credentials_in_the_url_become_basic_auth(scripted: Callable[..., object]) -> None:
    """https://user:pass@host/ sends 'Authorization: Basic ...' (what aiohttp did), never
    the credentials in the request line."""
    server, url = await scripted(ok())  # type: ignore[operator]
    async with WebhookClient() as client:
        await client.request("POST", url.replace("://", "://crm%40x:p%3Ass@") + "/hook", {}, b"x")
    assert b"\r\nAuthorization: Basic Y3JtQHg6cDpzcw==\r\n" in server.requests[0]  # crm@x:p:ss
    assert server.requests[0].startswith(b"POST /hook HTTP/1.1\r\n")


async def test_a_header_with_a_line_break_is_refused(scripted: Callable[..., object]) -> None:
    server, url = await scripted(ok())  # type: ignore[operator]
    async with WebhookClient() as client:
        with pytest.raises(ValueError, match="line break"):
            await client.request("POST", url, {"X-Evil": "a\r\nInjected: 1"}, b"x")
    assert server.requests == []


@pytest.mark.parametrize("kind", ["builtin", "aiohttp"])
async def test_names_go_through_the_ssrf_guard(scripted: Callable[..., object], kind: str) -> None:
    """A name resolving to loopback is refused by the guard (never connected to) unless
    its network is allowed, whichever client delivers."""
    server, url = await scripted(ok())  # type: ignore[operator]
    named = url.replace("127.0.0.1", "localhost")
    async with make_client(kind, GuardedResolver([])) as client:
        with pytest.raises(SsrfBlocked, match="loopback"):
            await client.request("POST", named, {}, b"x")
    async with make_client(kind, GuardedResolver(parse_networks(["127.0.0.0/8", "::1/128"]))) as client:
        assert (await client.request("POST", named, {}, b"x")).status == 200
    assert len(server.requests) == 1


async def _dribble(answer: bytes, pause: float, silent: bool = False) -> tuple[asyncio.Server, str]:
    """A server that reads a request, then sends ``answer`` a byte every ``pause`` s (or,
    ``silent``, nothing at all)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(1)
            if silent:
                await asyncio.sleep(30)
            for i in range(len(answer)):
                writer.write(answer[i : i + 1])
                await writer.drain()
                await asyncio.sleep(pause)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_the_read_timeout_runs_between_reads_not_over_the_answer() -> None:
    """An answer that keeps coming, a byte at a time, is read whole even though it takes
    longer than the read timeout; silence for that long is a TimeoutError (and the
    connection is not kept)."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    slow, slow_url = await _dribble(answer, pause=0.01)
    mute, mute_url = await _dribble(answer, pause=0.01, silent=True)
    loop = asyncio.get_running_loop()
    try:
        async with WebhookClient() as client:
            t0 = loop.time()
            assert (await client.request("POST", slow_url, {}, b"x", read_timeout=0.2)).status == 200
            assert loop.time() - t0 > 0.3  # ~40 bytes, 10 ms apart: longer than one timeout
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await client.request("POST", mute_url, {}, b"x", read_timeout=0.2)
            assert 0.15 < loop.time() - t0 < 2
            mute_port = mute.sockets[0].getsockname()[1]
            assert not client._idle.get(("http", "127.0.0.1", mute_port))  # given up: not kept
    finally:
        slow.close()
        mute.close()


@pytest.mark.parametrize("kind", ["builtin", "aiohttp"])
async def test_the_total_timeout_cuts_an_answer_that_keeps_coming(kind: str) -> None:
    """Bytes arriving within the read timeout do not make an answer endless: past the
    total timeout it is a TimeoutError, whichever client delivers."""
    slow, slow_url = await _dribble(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", pause=0.02)
    loop = asyncio.get_running_loop()
    try:
        async with make_client(kind) as client:
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await client.request("POST", slow_url, {}, b"x", read_timeout=0.2, total_timeout=0.3)
            assert 0.25 < loop.time() - t0 < 0.7  # the whole answer would take ~0.8 s
    finally:
        slow.close()


async def test_a_kept_connection_still_times_out_its_next_request() -> None:
    """The read timer is armed per connection, not per request: a request on a connection
    whose previous answer came at once is still given up after the read timeout."""
    answered = connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered, connections
        connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(1)
                if answered:
                    await asyncio.sleep(30)  # the second request: silence
                answered += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    loop = asyncio.get_running_loop()
    try:
        async with WebhookClient() as client:
            assert (await client.request("POST", url, {}, b"x", read_timeout=0.3)).status == 200
            await asyncio.sleep(0.2)  # the first request's timer is still armed, for 0.1 s more
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await client.request("POST", url, {}, b"x", read_timeout=0.3)
            assert 0.25 < loop.time() - t0 < 2
            assert (answered, connections) == (1, 1)  # the same connection, reused
    finally:
        server.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;e=x\r\n!\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nTrailer: t\r\n\r\n",
    ],
)
async def test_answers_cut_into_single_bytes_are_framed_alike(
    scripted: Callable[..., object], answer: bytes
) -> None:
    """The answer parser is fed as bytes arrive: one byte per read gives the same status,
    and the connection is reused for the next request."""
    server, url = await _dribble(answer, pause=0.0)
    try:
        async with WebhookClient() as client:
            assert (await client.request("POST", url, {}, b"x")).status == int(answer[9:12])
    finally:
        server.close()
    server2, url2 = await scripted(lambda _r: answer)  # type: ignore[operator]
    async with WebhookClient() as client:
        for _ in range(3):
            assert (await client.request("POST", url2, {}, b"x")).status == int(answer[9:12])
    assert server2.connections == 1
