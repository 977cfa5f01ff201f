"""The webhook HTTP client against real servers on loopback: framing, keep-alive, TLS,
the Answer (status, Retry-After, the body's start), and malformed answers."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.delivery.guard import GuardedResolver, SsrfBlocked, parse_networks
from bridge.delivery.http import HttpError, ResponseError, ServerDisconnectedError, WebhookClient, make_client

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
            url = f"http://127.0.0.1:{server.port}/h?q=1"
            assert (await client.request("POST", url, headers, b"A=%D0%AF&B=2")).status == 200
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


# ---- the Answer: status, Retry-After, the body's start ---------------------------------


@pytest.mark.parametrize("kind", ["builtin", "aiohttp"])
@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (b"Retry-After: 120\r\n", 120.0),
        (b"retry-after:  7 \r\n", 7.0),
        (b"Retry-After: Fri, 01 Jan 2100 00:00:00 GMT\r\n", 4102444800.0),  # minus now, below
        (b"Retry-After: soon\r\n", None),
        (b"", None),
    ],
)
async def test_retry_after_is_read_from_the_answer(
    scripted: Callable[..., object], kind: str, header: bytes, seconds: float | None
) -> None:
    """A 429 or 503 carries Retry-After as seconds or an HTTP-date: the answer gives it as
    seconds from now (None when absent or unreadable), whichever client delivers."""
    _, url = await scripted(
        lambda _r: b"HTTP/1.1 429 Too Many Requests\r\n" + header + b"Content-Length: 4\r\n\r\nslow"
    )  # type: ignore[operator]
    async with make_client(kind) as client:
        answer = await client.request("POST", url, {}, b"x")
    assert (answer.status, answer.body) == (429, b"slow")
    if seconds is not None and seconds > 1e9:  # an HTTP-date: seconds from now
        assert answer.retry_after is not None
        assert abs(answer.retry_after - (seconds - time.time())) < 5
    else:
        assert answer.retry_after == seconds


@pytest.mark.parametrize("kind", ["builtin", "aiohttp"])
@pytest.mark.parametrize(
    ("answer", "max_body", "body"),
    [
        (b"HTTP/1.1 400 Bad\r\nContent-Length: 11\r\n\r\nbad request", 65536, b"bad request"),
        (
            b"HTTP/1.1 400 Bad\r\nContent-Length: 5000\r\n\r\n" + b"e" * 4990 + b"0123456789",
            1000,
            b"e" * 1000,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 10, b"0123456789"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n",
            65536,
            b"abcde",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"100\r\n"
            + b"c" * 256
            + b"\r\n"
            + b"100\r\n"
            + b"d" * 256
            + b"\r\n0\r\n\r\n",
            300,
            b"c" * 256 + b"d" * 44,
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 65536, b""),
    ],
)
async def test_the_answer_carries_the_start_of_its_body(
    scripted: Callable[..., object], kind: str, answer: bytes, max_body: int, body: bytes
) -> None:
    """The body comes back whole up to max_body bytes, cut there when longer: framed by
    Content-Length or chunks, whichever client delivers."""
    _, url = await scripted(lambda _r: answer)  # type: ignore[operator]
    async with make_client(kind) as client:
        got = await client.request("POST", url, {}, b"x", max_body=max_body)
    assert (got.status, got.body) == (int(answer[9:12]), body)


@pytest.mark.parametrize("kind", ["builtin", "aiohttp"])
@pytest.mark.parametrize(("size", "max_body"), [(5, 100), (5000, 100)])
async def test_a_body_ended_by_close_gives_its_start(
    scripted: Callable[..., object], kind: str, size: int, max_body: int
) -> None:
    """No Content-Length, not chunked: the body runs to the close; its first max_body bytes
    come back."""
    text = bytes(range(48, 58)) * (size // 10) if size >= 10 else b"hello"
    _, url = await scripted(lambda _r: b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\n\r\n" + text, close_after=1)  # type: ignore[operator]
    async with make_client(kind) as client:
        got = await client.request("POST", url, {}, b"x", max_body=max_body)
    assert (got.status, got.retry_after, got.body) == (503, 3.0, text[:max_body])


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"RTSP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"<html>hello</html>",
    ],
)
async def test_malformed_answers_are_response_errors(scripted: Callable[..., object], answer: bytes) -> None:
    """What is not an HTTP/1.x answer (or says two things about its length) is a
    ResponseError, and the connection is not kept."""
    server, url = await scripted(lambda _r: answer)  # type: ignore[operator]
    async with WebhookClient() as client:
        with pytest.raises(ResponseError):
            await client.request("POST", url, {}, b"x")
        assert not any(client._idle.values())
    assert server.connections == 1


async def test_bytes_after_an_answer_keep_its_connection_from_reuse(scripted: Callable[..., object]) -> None:
    """A receiver that answers twice to one request is out of step: the first answer
    counts, the connection is dropped, and the next request gets its own answer."""
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 201 OK\r\nContent-Length: 1\r\n\r\nb",
        ]
    )
    server, url = await scripted(lambda _r: next(answers))  # type: ignore[operator]
    async with WebhookClient() as client:
        first = await client.request("POST", url, {}, b"x")
        await asyncio.sleep(0.05)
        second = await client.request("POST", url, {}, b"x")
    assert (first.status, first.body, second.status, second.body) == (200, b"a", 201, b"b")
    assert server.connections == 2


async def test_a_head_answer_has_no_body_and_its_connection_is_reused(
    scripted: Callable[..., object],
) -> None:
    """The answer to HEAD announces a length it does not send: it ends at its head, and the
    next answer on the same connection is framed right."""
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            b"HTTP/1.1 202 OK\r\nContent-Length: 2\r\n\r\nhi",
        ]
    )
    server, url = await scripted(lambda _r: next(answers))  # type: ignore[operator]
    async with WebhookClient() as client:
        head = await client.request("HEAD", url, {})
        post = await client.request("POST", url, {}, b"x")
    assert (head.status, head.body, post.status, post.body) == (200, b"", 202, b"hi")
    assert server.connections == 1


VALID = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 429 Slow\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.0 500 Oops\r\n\r\nbody till close",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
]


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """Bytes a broken receiver might send: noise, a valid answer cut short, with a byte
    changed, or followed by noise or (part of) another answer."""
    kind = draw(st.sampled_from(["noise", "cut", "flip", "tail", "two"]))
    if kind == "noise":
        return draw(st.binary(max_size=300))
    valid = draw(st.sampled_from(VALID))
    if kind == "cut":
        return valid[: draw(st.integers(0, len(valid)))]
    if kind == "two":  # then (part of) a second answer
        second = draw(st.sampled_from(VALID))
        return valid + second[: draw(st.integers(1, len(second)))]
    if kind == "flip":
        at = draw(st.integers(0, len(valid) - 1))
        return valid[:at] + bytes([draw(st.integers(0, 255))]) + valid[at + 1 :]
    return valid + draw(st.binary(min_size=1, max_size=100))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=answers(), close=st.booleans(), method=st.sampled_from(["POST", "HEAD"]))
def test_any_bytes_as_an_answer_end_in_an_answer_or_a_named_error(
    answer: bytes, close: bool, method: str
) -> None:
    """Whatever the receiver sends (then closing or not), a request ends within its
    timeouts, with an Answer or an HttpError or TimeoutError, and the client's next
    request on the same receiver gets its own, well-formed answer."""
    good = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal first
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b"Content-Length: 1\r\n" in head:
                    await reader.readexactly(1)
                mine, first = first, False
                writer.write(answer if mine else good)
                await writer.drain()
                if mine and close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            async with WebhookClient() as client:
                try:
                    got = await asyncio.wait_for(
                        client.request(method, url, {}, b"x", read_timeout=0.05, total_timeout=1.0), 3
                    )
                    assert 0 <= got.status <= 999 and len(got.body) <= 65536
                except (HttpError, TimeoutError):
                    pass
                after = await asyncio.wait_for(client.request("POST", url, {}, b"x", read_timeout=1.0), 3)
                assert (after.status, after.body) == (200, b"good")
        finally:
            server.close()

    first = True
    asyncio.run(run())


def test_the_client_runs_on_uvloop() -> None:
    """``ami-bridge run`` uses uvloop when installed: the client works on its loop (whose
    transports are not asyncio.Transport subclasses), keep-alive and answers alike."""
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (pip install -e '.[dev]')")
    got: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                got.append(await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(1))
                writer.write(b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nbusy")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run() -> list[tuple[int, float | None, bytes]]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            async with WebhookClient() as client:
                answers = [await client.request("POST", url, {}, b"x") for _ in range(3)]
        finally:
            server.close()
        return [(a.status, a.retry_after, a.body) for a in answers]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(run()) == [(503, 2.0, b"busy")] * 3
        assert type(runner.get_loop()).__module__.startswith("uvloop")
    assert len(got) == 3
