"""Conferences (ConfBridge): a phone that joins a conference room gets a dial-out to the
room's number, answered as it joins, and its hangup when it leaves the call.

A phone already in a call that reaches the room (transferred into it) keeps that
component; only a phone that dialed the room itself gets one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.translate.dial import DialRules
from bridge.translate.model import Emitted
from bridge.translate.parties import OUT

if TYPE_CHECKING:
    from bridge.ami.message import Message


class ConferenceRules(DialRules):
    """ConfbridgeJoin."""

    def _on_confbridgejoin(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            return
        ext = self._phones.get(chan.device or "")
        if ext is None or chan.out_comp is not None or any(not c.ended for c in chan.comps):
            return
        fields = {
            **self._party(chan).caller_fields(),
            "CalledNumber": self._dir.dialed(chan.dialed or msg.get("Conference")),
        }
        chan.out_comp = self._start(out, chan, ext, OUT, ts, fields, kind="conference")
        self._answer(out, chan.out_comp, ts)
