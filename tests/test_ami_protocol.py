"""The AMI protocol under panoramisk: framing, the early filter, responses, Shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.ami.filter import early_filter
from bridge.ami.message import Message
from bridge.ami.protocol import StreamProtocol


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        pass


def _protocol(want: Any = None) -> tuple[StreamProtocol, list[tuple[bytes, Message]], list[object]]:
    got: list[tuple[bytes, Message]] = []
    lost: list[object] = []
    proto = StreamProtocol(lambda raw, msg: got.append((raw, msg)), want)
    proto.connection_made(_Transport())
    proto.connection_lost = lost.append  # type: ignore[method-assign]
    return proto, got, lost


STREAM = (
    b"Asterisk Call Manager/9.0.0\r\n"
    b"Event: Newchannel\r\nUniqueid: a.1\r\n\r\n"
    b"Event: RTCPSent\r\nUniqueid: a.1\r\n\r\n"
    b"Event: VarSet\r\nUniqueid: a.1\r\nVariable: DIALSTATUS\r\nValue: ANSWER\r\n\r\n"
    b"Event: Hangup\r\nUniqueid: a.1\r\n\r\n"
)


def test_wanted_blocks_reach_the_sink_in_order_split_anywhere() -> None:
    """Whatever the reads' sizes: the banner sets the version, the wanted events reach
    the sink raw and parsed, in order, and the unwanted one (RTCPSent) does not."""
    for size in (1, 7, 64, len(STREAM)):
        proto, got, lost = _protocol(early_filter())
        for i in range(0, len(STREAM), size):
            proto.data_received(STREAM[i : i + size])
        assert proto.version == "9.0.0"
        assert [m.event for _, m in got] == ["Newchannel", "VarSet", "Hangup"]
        assert got[1][0] == b"Event: VarSet\r\nUniqueid: a.1\r\nVariable: DIALSTATUS\r\nValue: ANSWER\r\n\r\n"
        assert lost == []


async def test_responses_and_list_events_go_to_the_action_that_asked() -> None:
    """An action's response and the list events carrying its ActionID resolve its future,
    even those the filter would drop (CoreShowChannel); other events do not."""
    proto, got, _ = _protocol(early_filter())
    future = proto.send({"Action": "CoreShowChannels"}, as_list=True)
    action_id = next(iter(proto.responses))
    aid = str(action_id).encode()
    proto.data_received(
        b"Response: Success\r\nActionID: " + aid + b"\r\nEventList: start\r\n\r\n"
        b"Event: CoreShowChannel\r\nActionID: " + aid + b"\r\nUniqueid: a.1\r\n\r\n"
        b"Event: Newchannel\r\nUniqueid: b.1\r\n\r\n"
        b"Event: CoreShowChannelsComplete\r\nActionID: " + aid + b"\r\nEventList: Complete\r\n\r\n"
    )
    answer = await asyncio.wait_for(future, 1)
    assert [m.get("Event") for m in answer] == [None, "CoreShowChannel", "CoreShowChannelsComplete"]
    assert [m.event for _, m in got] == [None, "Newchannel"]  # the response is wanted, the list item not


def test_shutdown_drops_the_connection_and_nothing_else_does() -> None:
    """Asterisk's Shutdown event ends the connection (panoramisk then reconnects); an
    event whose name only starts like it does not."""
    proto, got, lost = _protocol()
    proto.data_received(b"Event: ShutdownX\r\nShutdown: Cleanly\r\n\r\n")
    assert lost == [] and [m.event for _, m in got] == ["ShutdownX"]
    proto.data_received(b"Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\n")
    assert lost == [None]
