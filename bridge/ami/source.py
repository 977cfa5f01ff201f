"""The live AMI source: one ordered stream of messages and connection changes.

panoramisk's ``Manager`` keeps the TCP connection, logs in, sends pings and
reconnects; :class:`~bridge.ami.protocol.StreamProtocol` frames the bytes. Every block
is put, in arrival order, on one unbounded queue (the read loop never waits on the
consumer: Asterisk disconnects slow readers), together with ``connected`` /
``disconnected`` / ``login-failed`` / ``tls-failed`` markers so the pipeline knows what it missed.
Messages are queued as they are (tens of thousands a second on a busy PBX): the daemon
takes them in batches with :meth:`AmiSource.batch`; ``async for`` and :meth:`AmiSource.get`
hand out one :class:`SourceItem` at a time.

With ``ami.tls`` the connection is TLS (:mod:`bridge.ami.tls` makes the context); a
failed handshake is a ``tls-failed`` item saying why and what to fix.

Reconnects back off exponentially from ``reconnect_min`` to ``reconnect_max``
seconds and start over after a successful login.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from panoramisk import Manager

from bridge.ami.message import Message
from bridge.ami.protocol import StreamProtocol, protocol_factory
from bridge.ami.tls import client_context, describe_failure
from bridge.config import AmiConfig

log = logging.getLogger(__name__)

Kind = Literal["message", "connected", "disconnected", "login-failed", "tls-failed"]


class ActionError(Exception):
    """An AMI action could not be done (not connected, refused, no answer)."""


@dataclass(slots=True)
class SourceItem:
    """One thing that happened on the AMI connection, in order."""

    kind: Kind
    msg: Message | None = None
    detail: str = ""


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager with exponential reconnect backoff and login-failure reporting."""

    def __init__(self, source: AmiSource, **config: Any) -> None:
        super().__init__(**config)
        self._source = source

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self._source.closed:
            return None  # a reconnect scheduled before close()
        # the delay used if this attempt fails (panoramisk reads it when it retries)
        self.reconnect_timeout = self._source._next_backoff()
        tls = self._source.config.tls
        if not self.config["ssl"] or tls is None:
            return super().connect(*args, **kwargs)
        # panoramisk's connect() gives create_connection no server_hostname
        task = asyncio.ensure_future(self.loop.create_connection(
            self.config["protocol_factory"], self.config["host"], self.config["port"],
            ssl=self.config["ssl"], server_hostname=tls.server_hostname or self.config["host"]))  # fmt: skip
        task.add_done_callback(self.connection_made)
        return task

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        tls = self._source.config.tls
        err = None if f.cancelled() else f.exception()
        if err is not None and self.config["ssl"] and tls is not None and isinstance(err, ssl.SSLError):
            detail = describe_failure(err, tls, self.config["host"], self.config["port"])
            log.error("AMI over TLS to %s:%s: %s; retrying in %.1f s",
                      self.config["host"], self.config["port"], detail, self.reconnect_timeout)  # fmt: skip
            self._source._push(SourceItem("tls-failed", detail=detail))
        super().connection_made(f)

    def login(self, future: asyncio.Future[Any]) -> bool:
        ok = bool(super().login(future))
        if not ok:
            try:
                reason = future.result().get("Message", "refused")
            except Exception as err:  # a cancelled or failed login action
                reason = str(err)
            self._source._push(SourceItem("login-failed", detail=str(reason)))
            log.error("AMI login refused for user %r: %s; retrying in %.1f s",
                      self.config.get("username"), reason, self.reconnect_timeout)  # fmt: skip
            if self.protocol is not None:
                self.protocol.transport.close()
        return ok


class AmiSource:
    """Connect to AMI and iterate over :class:`SourceItem` in arrival order."""

    def __init__(self, config: AmiConfig, events: str = "on", want: Callable[[bytes], bool] | None = None,
                 coarse: Callable[[bytes], object] | None = None) -> None:  # fmt: skip
        self.config = config
        #: messages and connection changes, in arrival order
        self._items: deque[Message | SourceItem] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.connected = False
        self.closed = False
        self._backoff = config.reconnect_min
        self._loop = asyncio.get_running_loop()
        tls = config.tls
        self.manager = _Manager(
            self,
            host=config.host,
            port=config.port,
            username=config.username,
            secret=config.secret,
            ssl=client_context(tls) if tls is not None and tls.enabled else False,
            events=events,
            # our keepalive() pings instead: panoramisk's piles up unanswered pings forever
            ping_delay=10**9,
            ping_interval=10**9,
            reconnect_timeout=config.reconnect_min,
            protocol_factory=protocol_factory(self._on_block, want, coarse),
            loop=self._loop,
            on_login=self._on_login,
            on_disconnect=self._on_disconnect,
        )
        self._keepalive: asyncio.Task[None] | None = None

    def set_filters(
        self, want: Callable[[bytes], bool] | None, coarse: Callable[[bytes], object] | None
    ) -> None:
        """Filter with these from the next block on (a reload whose configuration needs
        other messages), on this connection and the ones after it; the connection itself
        (and the event mask it logged in with: all events) is left as it is."""
        self.manager.config["protocol_factory"] = protocol_factory(self._on_block, want, coarse)
        protocol = self.manager.protocol
        if isinstance(protocol, StreamProtocol):
            protocol.set_filters(want, coarse)

    def _next_backoff(self) -> float:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.config.reconnect_max)
        return delay

    def _push(self, item: Message | SourceItem) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _on_block(self, _raw: bytes, msg: Message) -> None:
        self._push(msg)

    def _on_login(self, _manager: Manager) -> None:
        self.connected = True
        self._backoff = self.config.reconnect_min
        log.info("AMI logged in to %s:%s as %r", self.config.host, self.config.port, self.config.username)
        self._push(SourceItem("connected"))

    def _on_disconnect(self, _manager: Manager, exc: object) -> None:
        was = self.connected
        self.connected = False
        if was:
            log.warning("AMI connection to %s:%s lost: %s", self.config.host, self.config.port, exc)
            self._push(SourceItem("disconnected", detail=str(exc or "")))

    async def action(self, fields: dict[str, Any], timeout: float = 10.0) -> dict[str, str]:
        """Send one AMI action and return its response headers.

        Raises :class:`ActionError` when AMI is not logged in, refuses, or does not answer.
        (``as_list=False``: panoramisk would otherwise wait forever after "... queued".)
        """
        if not self.connected:
            raise ActionError("AMI is not connected")
        try:
            resp = await asyncio.wait_for(self.manager.send_action(dict(fields), as_list=False), timeout)
        except TimeoutError as err:
            raise ActionError(f"no answer to {fields.get('Action')} within {timeout:g} s") from err
        if isinstance(resp, list):
            resp = resp[0]
        result = {str(k): str(v) for k, v in dict(resp).items()}
        if result.get("Response") == "Error":
            raise ActionError(result.get("Message", "refused"))
        return result

    def start(self) -> None:
        """Start connecting (and reconnecting, for as long as the source lives)."""
        self.manager.connect()
        self._keepalive = asyncio.ensure_future(self.keepalive())

    async def keepalive(self) -> None:
        """Ping every ``ping_interval``; a ping unanswered for as long means a half-open or
        hung connection: abort it so panoramisk reconnects (and the pipeline resyncs)."""
        while not self.closed:
            await asyncio.sleep(self.config.ping_interval)
            if not self.connected:
                continue
            try:
                await self.action({"Action": "Ping"}, timeout=self.config.ping_interval)
            except ActionError as err:
                log.warning("AMI ping failed (%s): dropping the connection to reconnect", err)
                protocol = self.manager.protocol
                if protocol is not None and getattr(protocol, "transport", None) is not None:
                    protocol.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        self.manager.close()

    async def batch(self, limit: int) -> list[Message | SourceItem]:
        """Wait for something, then take up to ``limit`` items in arrival order: each
        message as its :class:`Message`, each connection change as a :class:`SourceItem`."""
        await self.wait()
        return self.take(limit)

    async def wait(self) -> None:
        """Until an item is queued (at once if one is)."""
        while not self._items:
            self._waiter = self._loop.create_future()
            await self._waiter

    @property
    def queued(self) -> int:
        """Items waiting to be taken."""
        return len(self._items)

    def take(self, limit: int) -> list[Message | SourceItem]:
        """What :meth:`batch` takes, without waiting: up to ``limit`` items, maybe none."""
        items = self._items
        if len(items) <= limit:
            taken = list(items)
            items.clear()
            return taken
        return [items.popleft() for _ in range(limit)]

    async def get(self) -> SourceItem:
        """The next item, waiting for it (a message comes as a ``message`` item)."""
        item = (await self.batch(1))[0]
        return item if isinstance(item, SourceItem) else SourceItem("message", item)

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        while True:
            yield await self.get()
