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
    PendingHangup,
    device_of,
    number_in_dial_string,
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
        ext = self._phones.get(chan.device or "")
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
            if linkedid != uid:  # its first channel is older than the stream: not seen whole
                self.partial.add(linkedid)
        tech, device = device_of(name)
        exten = msg.get("Exten", "")
        chan = Channel(uid=uid, name=name, call=call, tech=tech, device=device, is_local=tech == "Local",
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
        if chan.transfer_dialed:
            # the Dial a blind transfer started is over (a DIALSTATUS before it is the
            # Dial the transfer interrupted)
            chan.transferred_by, chan.transfer_dialed = None, False
        if self._pending:
            for other in self._pending_dialed(chan):
                other.dial = False  # the Dial is over: no DialEnd will say more
                self._settle(out, other)
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
        if caller is not None and dest.uid not in caller.dials:
            caller.dials.append(dest.uid)
        dest.dial_string = msg.get("DialString", "")
        origin = self._origin(caller)
        # what the carrier is shown: the caller id the dialing channel passes on (the
        # outgoing leg's connected line says the same, but races the caller's own update)
        ani = None
        if dest.device in self._trunks:
            ani = msg.get("CallerIDNum") if caller is not None else msg.get("DestConnectedLineNum")
        if ani in UNKNOWN_CID:
            ani = None
        if origin is not None:
            if caller is not None and caller is not origin and caller.consult is None:
                self._consultation(out, caller, origin, ts, ani)
            self._start_caller(out, origin, ts, ani)
        if caller is not None:
            # the callee is in the caller's call, and inherits what the caller carries
            self._join_call(dest, caller.call)
            for k, v in caller.vars.items():
                dest.vars.setdefault(k, v)
        return Dial(dest, caller, origin, ani)

    def _consultation(self, out: list[Emitted], caller: Channel, origin: Channel, ts: int,
                      ani: str | None) -> None:  # fmt: skip
        """A Local pair no Dial created, bridged with a phone, dials: the phone consults
        someone (an attended transfer). The consultation is a call of its own (CallID: the
        pair's first Uniqueid), as when a phone places it itself: the phone gets a dial-out
        for it, which ends when the phone or the consultation goes, and whoever the pair
        dials is in that call."""
        local1 = self._partner(caller)
        ext = self._phones.get(origin.device or "")
        if ext is None or local1 is None or local1.dialed_by is not None:
            return
        if self._bridge_peer(local1) is not origin:
            return
        consultation = Call(call_id=local1.uid, linkedid=local1.uid)
        self.calls[local1.uid] = consultation
        if origin.call.call_id in self.partial:
            self.partial.add(local1.uid)
        self._join_call(local1, consultation)
        self._join_call(caller, consultation)
        fields = {
            **self._party(origin).caller_fields(),
            "CalledNumber": self._dir.dialed(local1.dialed),
            **ext_fields("Called", self._number_ext(local1.dialed)),
            "ANI": ani,
        }
        comp = self._start(out, origin, ext, OUT, ts, fields, kind="consult", call=consultation)
        caller.consult = comp
        local1.also_ends.append(comp)

    def _phone_rung(self, out: list[Emitted], dial: Dial, ts: int) -> bool:
        """A phone dialed by another channel gets its dial-in (True if it is one)."""
        dest, caller = dial.dest, dial.caller
        ext = self._phones.get(dest.device or "")
        if ext is None or caller is None:
            return False
        src = dial.origin or caller
        transferee = self._transferred(caller)
        if transferee is not None and transferee.transferred_by is not None:
            # after a blind transfer the targets (a ring group: each of them) are called on
            # behalf of the transferer but will talk to the transferee: the RemoteNumber
            fields = {**transferee.transferred_by.caller_fields(), "RemoteNumber": self._party(src).num}
            transferee.transfer_dialed = True
        else:
            fields = self._party(src, caller).caller_fields(self._via(src))
        fields.update({"CalledNumber": ext.extended, **ext_fields("Called", ext)})
        self._start(out, dest, ext, IN, ts, fields)
        return True

    def _forwarded_leg(self, out: list[Emitted], dial: Dial, ts: int) -> None:
        """A trunk leg dialed for a forwarded call: the forwarding extension's dial-out."""
        dest, caller = dial.dest, dial.caller
        if dest.device not in self._trunks:
            return
        fwd_ext = self._dir.named(dest.vars.get(self.config.variables.forwarded_from))
        if fwd_ext is None:
            return
        # the forwarding extension calls out on behalf of the caller, who is the party
        # the forward target will talk to (RemoteNumber)
        fsrc = dial.origin or caller
        fields = {
            **self._dir.phone(fwd_ext).caller_fields(),
            "CalledNumber": number_in_dial_string(dest.dial_string) or dest.dialed,
            "Transfered": "yes",
            "ANI": dial.ani,
            "RemoteNumber": self._party(fsrc, caller).num if fsrc is not None else None,
        }
        dest.out_comp = self._start(out, dest, fwd_ext, OUT, ts, fields)

    def _outer_outcome(self, uid: str, status: str) -> None:
        """Tells a Local pair's dialing half, and what it dials through further Local pairs,
        how the Dial further out ended."""
        chan = self.channels.get(uid)
        if chan is None:
            return
        chan.outer_outcome = status
        for dialed in self._dialed(chan):
            dialed.outer_outcome = status
            if dialed.name.startswith("Local/") and dialed.name.endswith(";1"):
                self._outer_outcome(self._local_uids.get(dialed.name[:-1] + "2", ""), status)

    def _dial_end(self, msg: Message, ts: int, out: list[Emitted]) -> Channel | None:
        """A DialEnd: answers on ANSWER, else the callee's outcome. Returns the real caller
        when a person answered its call."""
        dest = self._chan(msg, "Dest")
        status = msg.get("DialStatus", "")
        if status in IGNORED_DIALSTATUS:
            return None
        caller = self._chan(msg)
        pending = self._pending.get(msg.get("DestUniqueid", "")) if dest is None else None
        if pending is not None:
            dest = pending.chan  # the DialEnd came after the Hangup
        if status == "CANCEL":
            # a leg inside Local pairs is cancelled when the Dial further out gives up: the
            # outcome is that one (a timeout out there is the phone's NOANSWER)
            outer = caller.outer_outcome if caller is not None else None
            status = outer or (dest.outer_outcome if dest is not None else None) or status
        name = msg.get("DestChannel", "")
        if status != "ANSWER" and name.startswith("Local/") and name.endswith(";1"):
            # the other half dials on: it and what it dials learn how this Dial ended (even
            # if this half already hung up)
            self._outer_outcome(self._local_uids.get(name[:-1] + "2", ""), status)
        if dest is None:
            return None
        origin = self._origin(caller)
        consult = caller.consult if caller is not None else None
        if status == "ANSWER":
            if dest.dialed_by is None:
                dest.answered_dial_at = ts  # a picker: its Pickup event may still come
            for comp in dest.comps:
                # a callback owner's dial-out is answered by its destination, not by itself
                if comp.kind != "callback":
                    self._answer(out, comp, ts)
            if consult is not None:
                self._answer(out, consult, ts)
            elif origin is not None and origin.out_comp is not None:
                self._answer(out, origin.out_comp, ts)
            if origin is not None and origin.transfer_dialed:
                origin.transferred_by, origin.transfer_dialed = None, False  # the target answered
        elif dest.dial_outcome is None:
            dest.dial_outcome = status
        if pending is not None:
            pending.dial = False
            self._settle(out, pending)
        if status != "ANSWER":
            if consult is not None:
                consult.outcome = status
            elif origin is not None:
                origin.last_dial_outcome = status
            return None
        return origin

    # ---- bridges and hangups ---------------------------------------------------------------

    def _on_bridgeenter(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            return
        self._enter_bridge(chan, msg.get("BridgeUniqueid", ""))
        if chan.bridged_since is None:
            chan.bridged_since = ts

    def _on_bridgeleave(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            pending = self._pending.get(msg.get("Uniqueid", ""))
            if pending is not None and pending.bridge:
                self._close_bridged(pending.chan, ts)
                pending.bridge = False
                self._settle(out, pending)
            return
        if chan.bridge == msg.get("BridgeUniqueid"):
            self._leave_bridge(chan)
        self._close_bridged(chan, ts)
        if chan.left_at is not None and chan.bridge is None:
            self._end_all(out, chan, chan.left_at, "")  # a transferer, gone from its bridge

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
        if comp.outcome is not None:
            return comp.outcome
        if comp.kind == "consult":
            return "CANCEL"  # the transferer gave up before the consultation ended
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
        if chan.records and self.keep_recordings:
            self.recordings_done.append(chan.uid)  # MixMonitor stops with its channel
        if self._hand_over(chan):
            self._close_bridged(chan, ts)
            self._drop(chan)
            return
        # Asterisk may send the channel's DialEnd, its BridgeLeave or (a callback's owner)
        # the OriginateResponse after its Hangup: its hangups wait for what they need
        cause = msg.get("Cause", "")
        open_comps = [c for c in chan.comps + chan.also_ends if not c.ended] if chan.comps else None
        in_bridge = chan.bridge is not None
        self._drop(chan)
        if open_comps:
            unanswered = [c for c in open_comps if c.answered_at is None]
            dial = bool(unanswered) and chan.dialed_by is not None and chan.dial_outcome is None
            originate = chan.dial_status_var is None and any(c.kind == "callback" for c in unanswered)
            if dial or in_bridge or originate:
                self._pending[chan.uid] = PendingHangup(chan, ts, cause, dial, in_bridge, originate)
            else:
                self._end_all(out, chan, chan.left_at if chan.left_at is not None else ts, cause)
        elif chan.also_ends:
            self._end_all(out, chan, ts, cause)
        if self._pending:
            for other in self._pending_dialed(chan):
                other.dial = False  # its dialer is gone: no DialEnd will say more
                self._settle(out, other)

    def _hang_up(self, out: list[Emitted], pending: PendingHangup) -> None:
        """The hangups of a channel's components, now that all is known (or waited for)."""
        chan = pending.chan
        # a transferer that left the call earlier ended its part then
        self._end_all(out, chan, chan.left_at if chan.left_at is not None else pending.ts, pending.cause)

    def _end_all(self, out: list[Emitted], chan: Channel, ts: int, cause: str) -> None:
        """Every open component on ``chan`` (and those that end with it) ends at ``ts``."""
        self._close_bridged(chan, ts)
        if not chan.comps and not chan.also_ends:
            return
        rec = self._var(chan, "RecID") or chan.call.vars.get("MIXMONITOR_FILENAME")
        for comp in chan.comps + chan.also_ends:
            if not comp.ended:
                self._end(out, chan, comp, ts, self._outcome(chan, comp, cause), rec)

    def _settle(self, out: list[Emitted], pending: PendingHangup) -> None:
        """A pending hangup goes out once it waits for nothing more."""
        if not pending.waiting and self._pending.pop(pending.chan.uid, None) is not None:
            self._hang_up(out, pending)

    def _flush_pending(self, out: list[Emitted], before: int | None = None) -> None:
        """Pending hangups (those older than ``before``, stream time) go out with what is
        known: Asterisk did not send the rest."""
        for pending in list(self._pending.values()):
            if before is None or pending.ts < before:
                pending.dial = pending.bridge = pending.originate = False
                self._settle(out, pending)

    @staticmethod
    def _close_bridged(chan: Channel, ts: int) -> None:
        """A channel that goes while in a bridge was bridged until then."""
        if chan.bridged_since is not None:
            chan.bridged_total += ts - chan.bridged_since
            chan.bridged_since = None

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
            real = next((c for c in self._dialed(partner) if c.up_at), None)
        if real is None:
            return False
        real.comps.extend(open_comps)
        chan.comps = [c for c in chan.comps if c not in open_comps]
        return not chan.comps
