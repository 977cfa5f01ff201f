"""panoramisk's AMI protocol with our own bytes-level framer underneath.

panoramisk keeps the connection, login, actions and reconnects; its own parser drops
UTF-8 characters split across reads and values of empty trailing headers (see
shared/spec/libraries-facts.md), and runs every registered pattern on every event.
:class:`StreamProtocol` replaces ``data_received``: bytes go through
:class:`bridge.ami.message.Framer`, every block (responses included) is handed, raw and
in order, to one synchronous ``sink``, and only action responses (with the list events
that answer an action) are given back to panoramisk so its futures resolve. Events never
go through panoramisk's dispatch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message as PanoramiskMessage

from bridge.ami.message import Framer, Message, is_banner, parse

#: ``sink(raw_block, parsed)``: called for every block after the banner, in order.
Sink = Callable[[bytes, Message], None]
_SHUTDOWN = b"Event: Shutdown"


class StreamProtocol(AMIProtocol):  # type: ignore[misc]
    """An AMIProtocol whose input is framed by us and handed to a sink."""

    def __init__(self, sink: Sink, want: Callable[[bytes], bool] | None = None,
                 coarse: Callable[[bytes], object] | None = None) -> None:  # fmt: skip
        super().__init__()
        self._sink = sink
        self._want = want
        #: a C-level first pass of ``want`` (:func:`bridge.ami.filter.coarse_filter`)
        self._coarse = coarse
        self._framer = Framer()

    def set_filters(
        self, want: Callable[[bytes], bool] | None, coarse: Callable[[bytes], object] | None
    ) -> None:
        """Use other filters from the next block on."""
        self._want, self._coarse = want, coarse

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._framer = Framer()

    def data_received(self, data: bytes) -> None:
        want = self._want
        sink = self._sink
        responses = self.responses  # the actions awaiting an answer (usually none)
        # while an action awaits its answer, every block is looked at (its list events)
        for block in self._framer.feed(data, None if responses else self._coarse):
            wanted = want is None or want(block)
            if not wanted and not (responses and b"ActionID: " in block):
                continue  # no rule needs it and no action awaits it: never parsed
            if not block.startswith(b"Event: "):  # a response, or the banner (by its first bytes)
                if is_banner(block):  # wanted: it is no event
                    if getattr(self, "version", None) is None:
                        self.version = block.decode("utf-8", "replace").partition("/")[2].strip()
                    continue
                msg = parse(block)
                if wanted:
                    sink(block, msg)
                if msg.get("Response") is not None or msg.get("ActionID") in responses:
                    self._to_panoramisk(block)
                continue
            msg = parse(block)
            if wanted:
                sink(block, msg)
            if responses and msg.get("ActionID") in responses:
                self._to_panoramisk(block)  # a list event answering an action (CoreShowChannels...)
            elif block.startswith(_SHUTDOWN) and msg.event == "Shutdown":
                # Asterisk closes the socket right after; let panoramisk reconnect.
                self.connection_lost(None)

    def _to_panoramisk(self, block: bytes) -> None:
        pm = PanoramiskMessage.from_line(block.decode("utf-8", "replace").strip())
        if pm is not None:
            self.handle_message(pm)


def protocol_factory(sink: Sink, want: Callable[[bytes], bool] | None = None,
                     coarse: Callable[[bytes], object] | None = None) -> Callable[[], Any]:  # fmt: skip
    """A ``protocol_factory`` for ``panoramisk.Manager`` feeding ``sink`` (only the blocks
    ``want`` accepts, when given, with ``coarse`` as its first pass)."""
    return lambda: StreamProtocol(sink, want, coarse)
