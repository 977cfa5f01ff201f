"""Phones placing and receiving calls: the rules every other flow builds on.

* a phone placing a call gets ``dial-out`` when its channel starts dialing (its first
  DialBegin, or ``VarSet DIALSTATUS`` when Dial never got as far: CHANUNAVAIL); Local
  channel pairs are followed back to the real caller;
* a phone being called gets ``dial-in`` at the DialBegin that rings it;
* ``answer`` when the far side answers (DialEnd ANSWER), for the callee and the caller;
* ``hangup`` when the component's channel hangs up, with the outcome: ANSWER if it was
  answered, else the dial outcome (DialEnd's DialStatus for the callee, the caller's
  DIALSTATUS), never guessed from the hangup cause when Asterisk said better;
* forwarding: a trunk leg dialed with the forwarding variable (``FORWARDED_FROM=<endpoint>``)
  is a ``dial-out`` of that endpoint's extension with ``Transfered=yes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.translate.model import (
    IGNORED_DIALSTATUS,
    SPECIAL_EXTENS,
    UNKNOWN_CID,
    Call,
    Channel,
    Component,
    Dial,
    Emitted,
    endpoint_of,
)
from bridge.translate.parties import IN, OUT
from bridge.translate.wire import Wire, ext_fields

if TYPE_CHECKING:
    from bridge.ami.message import Message
    from bridge.config import Extension

#: hangup causes that say what happened when no dial outcome was seen
_CAUSES = {"17": "BUSY", "34": "CONGESTION", "38": "CONGESTION", "3": "CHANUNAVAIL"}


class DialRules(Wire):
    """Channels appearing, dialing, answering and hanging up."""

    def _start_caller(self, out: list[Emitted], chan: Channel, ts: int, ani: str | None,
                      called: Extension | None = None) -> None:  # fmt: skip
        """OUT component for a phone placing a call (once per channel)."""
        ext = self._phones.get(chan.endpoint or "")
        if ext is None or chan.out_comp is not None or chan.dialed_by is not None:
            return
        fields: dict[str, Any] = {
            **self._party(chan).caller_fields(),
            "CalledNumber": self._dir.dialed(chan.dialed),
            **ext_fields("Called", called or self._number_ext(chan.dialed)),
            "ANI": ani,
        }
        chan.out_comp = self._start(out, chan, ext, OUT, ts, fields)

    # ---- channels ------------------------------------------------------------------------

    def _on_newchannel(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        uid = msg.get("Uniqueid")
        name = msg.get("Channel", "")
        if not uid or uid in self.channels or name.startswith("Message/"):
            return
        linkedid = msg.get("Linkedid") or uid
        call = self.calls.get(linkedid)
        if call is None:
            call = Call(call_id=linkedid, linkedid=linkedid)
            self.calls[linkedid] = call
        tech, endpoint = endpoint_of(name)
        exten = msg.get("Exten", "")
        chan = Channel(uid=uid, name=name, call=call, tech=tech, endpoint=endpoint,
                       dialed=exten if exten and exten not in SPECIAL_EXTENS else None)  # fmt: skip
        self._set_cid(chan, msg, "")
        chan.own_cid_name = chan.cid_name
        call.live.add(uid)
        self.channels[uid] = chan
        if chan.is_local:
            self._local_uids[name] = uid
        self._absorb_from(chan, msg)

    def _on_newcallerid(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is not None:
            self._set_cid(chan, msg, "")

    def _note_dialed(self, chan: Channel, msg: Message) -> None:
        """What a calling channel (not dialed, nothing dialed yet) dialed: the first real
        extension its dialplan runs."""
        exten = msg.get("Exten", "")
        if exten and exten not in SPECIAL_EXTENS:
            chan.dialed = exten

    def _dial_status(self, out: list[Emitted], chan: Channel, value: str, ts: int) -> None:
        """``VarSet DIALSTATUS`` on the dialing channel: Dial is over."""
        if value not in IGNORED_DIALSTATUS:
            chan.dial_status_var = value
            # Dial ended without ever reaching a DialBegin (e.g. CHANUNAVAIL)
            self._start_caller(out, chan, ts, None)

    def _reached_fields(self, chan: Channel, ext: Extension) -> dict[str, Any]:
        """Who called whom, for a queue or IVR reached by ``chan`` (an IVR or queue it is
        already in stands as the caller's extension)."""
        return {
            **self._party(chan).caller_fields(self._via(chan)),
            "CalledNumber": ext.extended,
            **ext_fields("Called", ext),
        }

    @staticmethod
    def _person_answered(caller: Channel, ts: int, kinds: tuple[str, ...]) -> None:
        """A person answered the call on ``caller``: the queues and IVRs (of ``kinds``) it
        went through are Bridged=yes from now."""
        for comp in caller.comps:
            if comp.kind in kinds and comp.bridged_at is None and not comp.ended:
                comp.bridged_at = ts

    # ---- dialing -------------------------------------------------------------------------

    def _dial_begin(self, msg: Message, ts: int, out: list[Emitted]) -> Dial | None:
        """A DialBegin: who dials whom; the real caller's dial-out if it is a phone."""
        dest = self._chan(msg, "Dest")
        if dest is None:
            return None
        caller = self._chan(msg)
        dest.dialed_by = caller.uid if caller else None
        dest.dial_string = msg.get("DialString", "")
        if caller is not None:
            # the callee inherits what the caller carries
            for k, v in caller.vars.items():
                dest.vars.setdefault(k, v)
        origin = self._origin(caller)
        # what the carrier is shown: the outgoing channel's connected line
        ani = msg.get("DestConnectedLineNum") if dest.endpoint in self._trunks else None
        if ani in UNKNOWN_CID:
            ani = None
        if origin is not None:
            self._start_caller(out, origin, ts, ani)
        return Dial(dest, caller, origin, ani)

    def _phone_rung(self, out: list[Emitted], dial: Dial, ts: int) -> bool:
        """A phone dialed by another channel gets its dial-in (True if it is one)."""
        dest, caller = dial.dest, dial.caller
        ext = self._phones.get(dest.endpoint or "")
        if ext is None or caller is None:
            return False
        src = dial.origin or caller
        if src.transferred_by is not None:
            # after a blind transfer the target is called on behalf of the transferer
            # but will talk to the transferee: that one is the RemoteNumber
            fields = {**src.transferred_by.caller_fields(), "RemoteNumber": self._party(src).num}
            src.transferred_by = None
        else:
            fields = self._party(src, caller).caller_fields(self._via(src))
        fields.update({"CalledNumber": ext.extended, **ext_fields("Called", ext)})
        self._start(out, dest, ext, IN, ts, fields)
        return True

    def _forwarded_leg(self, out: list[Emitted], dial: Dial, ts: int) -> None:
        """A trunk leg dialed for a forwarded call: the forwarding extension's dial-out."""
        dest, caller = dial.dest, dial.caller
        if dest.endpoint not in self._trunks:
            return
        fwd_ext = self._phones.get(dest.vars.get(self.config.variables.forwarded_from) or "")
        if fwd_ext is None:
            return
        # the forwarding extension calls out on behalf of the caller, who is the party
        # the forward target will talk to (RemoteNumber)
        fsrc = dial.origin or caller
        fields = {
            **self._dir.phone(fwd_ext).caller_fields(),
            "CalledNumber": dest.dial_string.split("@", 1)[0] or dest.dialed,
            "Transfered": "yes",
            "ANI": dial.ani,
            "RemoteNumber": self._party(fsrc, caller).num if fsrc is not None else None,
        }
        dest.out_comp = self._start(out, dest, fwd_ext, OUT, ts, fields)

    def _dial_end(self, msg: Message, ts: int, out: list[Emitted]) -> Channel | None:
        """A DialEnd: answers on ANSWER, else the callee's outcome. Returns the real caller
        when a person answered its call."""
        dest = self._chan(msg, "Dest")
        status = msg.get("DialStatus", "")
        if dest is None or status in IGNORED_DIALSTATUS:
            return None
        caller = self._chan(msg)
        origin = self._origin(caller)
        if status == "ANSWER":
            for comp in dest.comps:
                # a callback owner's dial-out is answered by its destination, not by itself
                if comp.kind != "callback":
                    self._answer(out, comp, ts)
            if origin is not None and origin.out_comp is not None:
                self._answer(out, origin.out_comp, ts)
        elif dest.dial_outcome is None:
            dest.dial_outcome = status
        if status != "ANSWER":
            if origin is not None:
                origin.last_dial_outcome = status
            return None
        return origin

    # ---- bridges and hangups ---------------------------------------------------------------

    def _on_bridgeenter(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is not None and chan.bridged_since is None:
            chan.bridged_since = ts

    def _on_bridgeleave(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is not None and chan.bridged_since is not None:
            chan.bridged_total += ts - chan.bridged_since
            chan.bridged_since = None

    def _outcome(self, chan: Channel, comp: Component, cause: str) -> str:
        """A component's CallStatus on hangup."""
        if comp.kind == "ivr":
            return "ANSWER" if chan.up_at is not None else "CANCEL"
        if comp.kind == "queue-in":
            if comp.bridged_at is not None:
                return "ANSWER"
            return "CANCEL" if chan.abandoned else "NOANSWER"
        if comp.answered_at is not None:
            return "ANSWER"
        if comp is chan.out_comp and chan.dialed_by is None:
            status = chan.dial_status_var or chan.last_dial_outcome
            return status or "CANCEL"
        if chan.dial_outcome:
            return chan.dial_outcome
        return _CAUSES.get(cause, "NOANSWER")

    def _on_hangup(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            return
        self._on_bridgeleave(msg, ts, out)
        cause = msg.get("Cause", "")
        if self._hand_over(chan):
            self._drop(chan)
            return
        rec = self._var(chan, "RecID") or chan.call.vars.get("MIXMONITOR_FILENAME")
        for comp in chan.comps:
            if not comp.ended:
                self._end(out, chan, comp, ts, self._outcome(chan, comp, cause), rec)
        self._drop(chan)

    def _hand_over(self, chan: Channel) -> bool:
        """A Local;1 that goes away while the agent it reached talks on (optimization):
        its open components continue on the real agent channel instead of ending."""
        if not chan.is_local or not chan.name.endswith(";1"):
            return False
        open_comps = [c for c in chan.comps if not c.ended and c.answered_at is not None]
        if not open_comps:
            return False
        partner = self._partner(chan)
        real = None
        if partner is not None:
            real = next((c for c in self.channels.values() if c.dialed_by == partner.uid and c.up_at), None)
        if real is None:
            return False
        real.comps.extend(open_comps)
        chan.comps = [c for c in chan.comps if c not in open_comps]
        return not chan.comps
