"""Benchmark receiver, run in its own process: counts requests and their latency.

Prints its port on stdout, then serves HTTP/1.1 with keep-alive. Any request other than
``/stats`` is answered ``200 ok`` and recorded as its latency in µs: receive time minus
the request's ``EventTime`` field (query or form body) or its ``X-Sent-At`` header.
``GET /stats`` returns ``{"n", "first", "last", "lat"}`` (receive times in µs since the
epoch; ``?count=1`` leaves out ``lat``; ``?reset=1`` clears everything).

It is a bare asyncio protocol, not an aiohttp server, so that at thousands of requests
per second it takes little of the CPU the daemon under test shares with it (the same
receiver serves the baseline, so the comparison stays fair).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)
_SENT = re.compile(rb"\r\nx-sent-at: *(\d+)", re.I)
_EVENT_TIME = re.compile(rb"[?&\s]EventTime=(\d+)")
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

lat: list[int] = []
times = {"first": 0, "last": 0}


class Http(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            m = _LENGTH.search(head)
            size = int(m.group(1)) if m else 0
            if len(buf) < end + 4 + size:
                break
            body, buf = buf[end + 4 : end + 4 + size], buf[end + 4 + size :]
            self.handle(head, body)
        self.buf = buf

    def handle(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        target = line.split(b" ")[1] if line.count(b" ") >= 2 else b"/"
        if target.startswith(b"/stats"):
            doc: dict[str, object] = {"n": len(lat), **times}
            if b"count=1" not in target:
                doc["lat"] = list(lat)
            if b"reset=1" in target:
                lat.clear()
                times.update(first=0, last=0)
            payload = json.dumps(doc).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)  # fmt: skip
            return
        now = time.time_ns() // 1000
        m = _SENT.search(head) or _EVENT_TIME.search(b" " + body) or _EVENT_TIME.search(line)
        if m:
            lat.append(now - int(m.group(1)))
        if not times["first"]:
            times["first"] = now
        times["last"] = now
        self.transport.write(_OK)


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
