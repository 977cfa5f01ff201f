"""Callbacks: a call started by Originate on behalf of an extension towards a number.

The owner's phone rings first; its leg is the owner's ``dial-out`` to the destination
(never a dial-in from itself: the spec's self-call optimisation), answered when the
destination answers. Every event carries ``CallBackID``; the call's ``CallID`` is the
callback id (:meth:`Wire._sub_id`). A callback whose owner cannot be reached at all
creates no channel: when its ChannelId is the bridge's ``cb-<callback id>``, the owner
still gets dial-out and hangup, with the OriginateResponse's reason as CallStatus.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from bridge.translate.dial import DialRules
from bridge.translate.model import UNKNOWN_CID, Component, Dial, Emitted, device_of
from bridge.translate.parties import OUT
from bridge.translate.wire import ext_fields

if TYPE_CHECKING:
    from bridge.ami.message import Message
    from bridge.config import Config

#: OriginateResponse Reason -> CallStatus (anything else: the owner was unreachable)
_REASONS = {"3": "NOANSWER", "5": "BUSY", "8": "CONGESTION"}


class CallbackRules(DialRules):
    """The owner's leg (DialBegin with no caller) and OriginateResponse."""

    #: callbacks whose owner could not be reached, already reported (the latest few)
    _answered_originates: deque[str]

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._answered_originates = deque(maxlen=1000)

    def _owner_rung(self, out: list[Emitted], dial: Dial, msg: Message, ts: int) -> bool:
        """A callback's first leg rings its owner (True if it is one): the owner places the
        call, a dial-out to the destination shown to it as connected line."""
        dest = dial.dest
        ext = self._phones.get(dest.device or "")
        if ext is None or dial.caller is not None or not self._var(dest, "CallBackID"):
            return False
        shown = msg.get("DestConnectedLineNum", "")
        target = None if shown in UNKNOWN_CID else shown
        dest.dialed = target
        fields = {
            **self._party(dest).caller_fields(),
            "CalledNumber": self._dir.dialed(target),
            **ext_fields("Called", self._number_ext(target)),
        }
        dest.out_comp = self._start(out, dest, ext, OUT, ts, fields, kind="callback")
        return True

    def _on_originateresponse(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        if msg.get("Response") != "Failure":
            return
        uid = msg.get("Uniqueid", "")
        status = _REASONS.get(msg.get("Reason", ""), "CHANUNAVAIL")
        pending = self._pending.get(uid)
        chan = self.channels.get(uid) or (pending.chan if pending is not None else None)
        if chan is not None:
            if chan.out_comp is not None:
                chan.dial_status_var = status
            if pending is not None:
                pending.originate = False  # the Hangup came first
                self._settle(out, pending)
            return
        # No channel was ever created (the owner cannot be reached at all). A callback the
        # bridge started has ChannelId "cb-<callback id>": its owner gets dial-out + hangup.
        ext = self._phones.get(device_of(msg.get("Channel", ""))[1] or "")
        if ext is None or not uid.startswith("cb-") or uid in self.calls or uid in self._answered_originates:
            return
        self._answered_originates.append(uid)  # once, should the OriginateResponse come twice
        target = msg.get("Exten") or None
        callback_id = uid[3:]
        fields: dict[str, Any] = {
            # a callback's CallID is its callback id (what the callback API answered)
            "CallID": callback_id,
            "SubCallID": f"{callback_id}-1",
            "CallFlow": OUT,
            **self._dir.phone(ext).caller_fields(),
            "CalledNumber": self._dir.dialed(target),
            **ext_fields("Called", self._number_ext(target)),
            "CallAPIID": uid,
            "CallBackID": callback_id,
        }
        comp = Component(ext, fields["SubCallID"], OUT, fields, kind="callback", started_at=ts, ended=True)
        self._emit(out, comp, "dial-out", ts, CallStatus="CALLING")
        self._emit(out, comp, "hangup", ts, CallStatus=status, Duration=0)
