"""Where the wire fields are built: the one place that turns a component into the
events its extension receives.

Every event of a component repeats the call's identity (CallID, SubCallID, CallFlow, the
parties, CalledDID, Diversion, ClientApiID, Tag, CallBackID...): integrators often
subscribe queue and IVR extensions to ``hangup`` only, and the hangup alone must say who
called whom. Fields are written in the spec's order; optional fields without a value are
left out, never sent empty.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bridge.translate.model import Call, Channel, Component, Emitted, Recording, record_id
from bridge.translate.parties import IN
from bridge.translate.state import State

if TYPE_CHECKING:
    from bridge.config import Extension

FIELD_ORDER = (
    "EventType", "CallID", "SubCallID", "CallFlow", "CallStatus", "CallerIDNum", "CallerIDName",
    "CalledNumber", "CalledDID", "CallerExtension", "CallerExtensionID", "CalledExtension",
    "CalledExtensionID", "EventTime", "Duration", "BridgedDuration", "RecID", "CallAPIID",
    "Diversion", "ClientApiID", "Tag", "CallBackID", "Transfered", "Bridged", "RemoteNumber", "ANI",
)  # fmt: skip

_SIP_NUMBER = re.compile(r"(?:sips?|tel):\+?([^@;>]+)")


def ordered(fields: dict[str, Any], extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The event's fields in the spec's order, optional ones without a value left out."""
    return {k: v for k in (*FIELD_ORDER, *extra_keys) if (v := fields.get(k)) is not None and v != ""}


def diversion_number(header: str) -> str:
    """The number of a Diversion header: ``<sip:+7495...@x>;reason=...`` -> ``+7495...``."""
    m = _SIP_NUMBER.search(header)
    if not m:
        return header.split(";", 1)[0].strip().strip("<>")
    prefix = "+" if header[m.start(1) - 1] == "+" else ""
    return prefix + m.group(1)


def ext_fields(prefix: str, ext: Extension | None) -> dict[str, Any]:
    """``<prefix>Extension`` and ``<prefix>ExtensionID`` of an extension (none for None)."""
    if ext is None:
        return {}
    return {prefix + "Extension": ext.name, prefix + "ExtensionID": ext.id}


class Wire(State):
    """Components started, answered and ended, as events."""

    def _identity(self, chan: Channel) -> dict[str, Any]:
        """What every event of a component on ``chan`` carries about the call."""
        fields: dict[str, Any] = {"CallID": chan.call.call_id}
        did = self._var(chan, "CalledDID")
        if did:
            fields["CalledDID"] = did
        div = self._var(chan, "Diversion")
        if div:
            fields["Diversion"] = diversion_number(div)
        for name in ("ClientApiID", "Tag", "CallBackID"):
            value = self._var(chan, name)
            if value:
                fields[name] = value[:100] if name == "ClientApiID" else value
        return fields

    def _sub_id(self, chan: Channel, call: Call | None = None) -> str:
        """The next SubCallID of the call on ``chan`` (or of ``call``). Before the first one
        the CallID is settled: a call started as a callback takes its callback id as
        CallID (what the callback API answered, and what Telphin sends: CallBackID = CallID)."""
        call = call or chan.call
        if call.components == 0:
            call.call_id = self._var(chan, "CallBackID") or call.call_id
        return call.next_sub_id()

    def _start(
        self,
        out: list[Emitted],
        chan: Channel,
        ext: Extension,
        flow: str,
        ts: int,
        fields: dict[str, Any],
        kind: str = "call",
        event: str | None = None,
        call: Call | None = None,
    ) -> Component:
        """A new component of ``ext`` living on ``chan`` (in ``chan``'s call, or ``call``);
        emits its dial-in/dial-out (``event`` names another first event: a queue's out
        thread starts with dial-in)."""
        sub_id = self._sub_id(chan, call)
        base = self._identity(chan)
        if call is not None:
            base["CallID"] = call.call_id
        base.update({k: v for k, v in fields.items() if v not in (None, "")})
        base["SubCallID"] = sub_id
        base["CallFlow"] = flow
        base["CallAPIID"] = chan.uid
        comp = Component(ext, base["SubCallID"], flow, base, kind=kind, started_at=ts)
        chan.comps.append(comp)
        first = event or ("dial-in" if flow == IN else "dial-out")
        self._emit(out, comp, first, ts, CallStatus="CALLING")
        return comp

    def _emit(self, out: list[Emitted], comp: Component, event_type: str, ts: int, **extra: Any) -> None:
        fields = dict(comp.base)
        fields["EventType"] = event_type
        fields["EventTime"] = ts
        fields.update({k: v for k, v in extra.items() if v is not None and v != ""})
        out.append((comp.ext.id, ordered(fields)))

    def _answer(self, out: list[Emitted], comp: Component, ts: int) -> None:
        """The component's one answer (none after it ended)."""
        if comp.answered_at is None and not comp.ended:
            comp.answered_at = ts
            self._emit(out, comp, "answer", ts, CallStatus="ANSWER")

    def _end(self, out: list[Emitted], chan: Channel, comp: Component, ts: int, status: str,
             rec: str | None) -> None:  # fmt: skip
        """The component's one hangup: Duration is the talk time (for a queue's or IVR's
        in thread: from the answer after it, with Bridged saying whether there was one).
        When the call is recorded (``rec``: the recording's name), RecID is the record id
        minted for this component, and the daemon is told where its file is."""
        comp.ended = True
        extra: dict[str, Any] = {}
        if comp.kind == "ivr":
            duration = ts - (chan.up_at if chan.up_at is not None and chan.up_at > comp.started_at
                             else comp.started_at) if chan.up_at is not None else 0  # fmt: skip
            extra["Bridged"] = "yes" if comp.bridged_at is not None else "no"
            bridged = (ts - comp.bridged_at) if comp.bridged_at is not None else None
        elif comp.kind == "queue-in":
            duration = (ts - comp.bridged_at) if comp.bridged_at is not None else 0
            extra["Bridged"] = "yes" if comp.bridged_at is not None else "no"
            bridged = duration or None
        elif comp.kind == "consult":
            # the transferer's channel was bridged before; the consultation since its answer
            duration = (ts - comp.answered_at) if comp.answered_at is not None else 0
            bridged = duration or None
        else:
            duration = (ts - comp.answered_at) if comp.answered_at is not None else 0
            answered = comp.answered_at is not None
            bridged = chan.bridged_total if answered and chan.bridged_total else None
        uuid = record_id(comp.ext.id, comp.sub_id) if rec else None
        self._emit(out, comp, "hangup", ts, CallStatus=status, Duration=duration, BridgedDuration=bridged,
                   RecID=uuid, **extra)  # fmt: skip
        if uuid is not None and rec is not None and self.keep_recordings:
            path, channel = chan.call.recording or (None, None)
            self.recordings.append(Recording(uuid, comp.ext.id, out[-1][1], "call", rec, path,
                                             channel if channel in self.channels else None))  # fmt: skip
