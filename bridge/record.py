"""Record a live AMI stream to a file, byte for byte, for fixtures and bug reports.

The file holds every byte Asterisk sent after the login response (CRLF kept), so
``ami-bridge replay`` and the tests see exactly what the bridge would have seen.
Responses to the recorder's own keep-alive pings stay in the stream, as they would on
the bridge's own connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import BinaryIO

from panoramisk import Manager

from bridge.ami.message import Message
from bridge.ami.protocol import protocol_factory

log = logging.getLogger(__name__)


class RecordError(Exception):
    """The recorder could not log in or lost its connection."""


class Recorder:
    """Connects, logs in, and writes the raw stream after the login response to ``out``.

    It also counts live channels (Newchannel .. Hangup by Uniqueid) so a caller can wait
    until a scenario has finished: :meth:`wait_idle`.
    """

    def __init__(self, host: str, port: int, username: str, secret: str, out: BinaryIO) -> None:
        self._out = out
        self._loop = asyncio.get_running_loop()
        self._login: asyncio.Future[None] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._logged_in = False
        self.channels: set[str] = set()
        #: channel name by Uniqueid of every channel seen (the lab's driver acts on them)
        self.names: dict[str, str] = {}
        self.events = 0
        self.bytes = 0
        self.last_event_at = self._loop.time()
        self._manager = Manager(
            host=host,
            port=port,
            username=username,
            secret=secret,
            protocol_factory=protocol_factory(self._on_block),
            ping_delay=3600,
            reconnect_timeout=3600,
            loop=self._loop,
            on_disconnect=self._on_disconnect,
        )

    def _on_disconnect(self, _manager: Manager, exc: object) -> None:
        if not self._login.done():
            self._login.set_exception(RecordError(f"connection lost before login: {exc}"))
        if not self._lost.done():
            self._lost.set_result(None)

    def _on_block(self, raw: bytes, msg: Message) -> None:
        if not self._logged_in:
            # The first response on a new connection answers our Login action.
            if msg.get("Response") is not None:
                if msg.get("Response") == "Success":
                    self._logged_in = True
                    self._login.set_result(None)
                elif not self._login.done():
                    reason = msg.get("Message", "no reason given")
                    self._login.set_exception(RecordError(f"AMI login refused: {reason}"))
            return
        self._out.write(raw)
        self.bytes += len(raw)
        event = msg.event
        if event is None:
            return
        self.events += 1
        self.last_event_at = self._loop.time()
        uid = msg.get("Uniqueid")
        channel = msg.get("Channel", "")
        if event == "Newchannel" and uid and not channel.startswith("Message/"):
            self.channels.add(uid)
            self.names[uid] = channel
        elif event == "Hangup" and uid:
            self.channels.discard(uid)

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and log in; raises :class:`RecordError` on refusal or timeout."""
        self._manager.connect()
        try:
            await asyncio.wait_for(asyncio.shield(self._login), timeout)
        except TimeoutError as err:
            self._manager.close()
            raise RecordError(f"no AMI login answer within {timeout:g} s") from err
        except RecordError:
            self._manager.close()
            raise

    async def wait_idle(self, quiet: float = 1.5, timeout: float = 120.0) -> bool:
        """Wait until no channel is up and no event came for ``quiet`` seconds."""
        deadline = self._loop.time() + timeout
        while self._loop.time() < deadline:
            if self._lost.done():
                raise RecordError("AMI connection lost while recording")
            now = self._loop.time()
            if not self.channels and now - self.last_event_at >= quiet:
                return True
            await asyncio.sleep(0.1)
        return False

    def live_channel(self, prefix: str) -> str | None:
        """The name of the newest live channel whose name starts with ``prefix``."""
        for uid in reversed(list(self.names)):
            if uid in self.channels and self.names[uid].startswith(prefix):
                return self.names[uid]
        return None

    def stop(self) -> None:
        """Stop recording and close the connection."""
        self._manager.close()
        self._out.flush()


async def record(
    host: str,
    port: int,
    username: str,
    secret: str,
    out: BinaryIO,
    duration: float | None = None,
    until_idle: float | None = None,
) -> Recorder:
    """Record until ``duration`` elapses, the PBX is idle for ``until_idle`` seconds
    after at least one channel was seen, or the task is cancelled (Ctrl-C)."""
    rec = Recorder(host, port, username, secret, out)
    await rec.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        seen_channel = False
        while duration is None or loop.time() - started < duration:
            if rec._lost.done():
                raise RecordError("AMI connection lost while recording")
            seen_channel = seen_channel or bool(rec.channels)
            if (
                until_idle is not None
                and seen_channel
                and not rec.channels
                and loop.time() - rec.last_event_at >= until_idle
            ):
                break
            await asyncio.sleep(0.1)
    finally:
        rec.stop()
    return rec
