"""Transfers: the call goes on with the same CallID, and every extension gets its hangup
when it leaves.

* **Blind transfer**: the transferee's channel then dials the target; each target dialed
  by that Dial (a ring group: each member) is a new component, called on behalf of the
  transferer (CallerIDNum), with the party it will talk to, the transferee, as
  ``RemoteNumber`` (see :meth:`DialRules._phone_rung`).
* **Attended transfer**: while consulting, the transferer has a dial-out of its own to
  the target (:meth:`DialRules._consultation`), and the target a dial-in from the
  transferer. When the transfer completes (``AttendedTransfer``), the transferee and the
  target talk: the target's component gets the transferee as ``RemoteNumber``, the
  transferee's gets the target; the transferer's components end then (it leaves, even if
  its channel lingers until the target answers; a consultation not answered by then is
  CANCEL); when the consultation was a call of its own (phones that transfer with
  REFER/Replaces), it joins the transferee's call, so whatever happens next carries the
  transferee's CallID.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.translate.dial import DialRules
from bridge.translate.model import UNKNOWN_CID, Channel, Component, Emitted, device_of
from bridge.translate.parties import IN

if TYPE_CHECKING:
    from bridge.ami.message import Message


class TransferRules(DialRules):
    """BlindTransfer and AttendedTransfer."""

    def _on_blindtransfer(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        if msg.get("Result") != "Success":
            return
        transferee = self.channels.get(msg.get("TransfereeUniqueid", ""))
        transferer = self.channels.get(msg.get("TransfererUniqueid", ""))
        if transferee is None:
            return
        if transferer is not None:
            transferee.transferred_by = self._party(transferer)
            return
        name = msg.get("TransfererCallerIDName", "")
        name = "" if name in UNKNOWN_CID else name
        ext = self._phones.get(device_of(msg.get("TransfererChannel", ""))[1] or "")
        if ext is not None:
            transferee.transferred_by = self._dir.phone(ext, name)
        else:
            transferee.transferred_by = self._dir.internal(msg.get("TransfererCallerIDNum", ""), name)

    def _on_attendedtransfer(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        if msg.get("Result") != "Success":
            return
        transferee = self._far_end(self.channels.get(msg.get("TransfereeUniqueid", "")))
        target = self._transfer_target(msg)
        if transferee is None or target is None:
            return
        if target.call is not transferee.call:
            self._merge_calls(transferee.call, target.call)
        self._now_talks_to(target, transferee)
        self._now_talks_to(transferee, target)
        if msg.get("DestType") != "Threeway":
            # the transferer leaves (its channel may linger until the target answers)
            for key in ("OrigTransfererUniqueid", "SecondTransfererUniqueid"):
                self._leaves(out, self.channels.get(msg.get(key, "")), ts)

    def _leaves(self, out: list[Emitted], chan: Channel | None, ts: int) -> None:
        """A transferer's components end as it leaves the call: a consultation not
        answered yet is CANCEL (the transferer did not wait for the target). While its
        BridgeLeave has not come, they end when it does (or with the channel)."""
        if chan is None or chan.is_local:
            return
        chan.left_at = ts
        if chan.bridge is None:
            self._end_all(out, chan, ts, "")

    def _transfer_target(self, msg: Message) -> Channel | None:
        """The party the transferer consulted: the event names its channel, or (Asterisk
        leaves it out when the consultation's bridge was merged away) the transferer's
        consultation leads to it: the channel its Local half dialed."""
        target = self.channels.get(msg.get("TransferTargetUniqueid", ""))
        if target is not None:
            return self._far_end(target)
        transferer = self.channels.get(msg.get("SecondTransfererUniqueid", ""))
        if transferer is None:
            return None
        consult = next((c for c in reversed(transferer.comps) if c.kind == "consult"), None)
        if consult is None:
            return None
        local2 = next((c for c in self.channels.values() if c.consult is consult), None)
        if local2 is None:
            return None
        dialed = self._dialed(local2)
        # the one that answered; before any did (a "blonde" transfer), the one ringing; a
        # Local pair in between (a wrapped phone) is followed to the phone
        return self._far_end(next((c for c in dialed if c.up_at is not None), dialed[0] if dialed else None))

    def _now_talks_to(self, chan: Channel, party_chan: Channel) -> None:
        """After a transfer ``chan`` talks to ``party_chan``: its open components name that
        party as RemoteNumber when it is not the one they already show."""
        number = self._party(party_chan).num
        for comp in chan.comps:
            if not comp.ended and number and number != self._other_party(comp):
                comp.base["RemoteNumber"] = number

    @staticmethod
    def _other_party(comp: Component) -> str | None:
        """The number a component shows for the party it deals with."""
        other = comp.base.get("CallerIDNum" if comp.flow == IN else "CalledNumber")
        return other if isinstance(other, str) else None
