"""Call pickup and parking: someone other than the phone rung takes the call.

* **Pickup** (directed ``Pickup(ext@PICKUPMARK)`` or group ``Pickup()``): the picker's
  phone gets an incoming component of the picked call (dial-in, answer: it is the one who
  talks), the rung phone's hangup is CANCEL (answered elsewhere, as a ring group's
  others), and the caller's call is answered.
* **Parking**: a call parked (usually by a blind transfer to the lot) waits in its slot;
  the phone that takes it from the slot gets a dial-out to the slot number, answered at
  once, with the parked party as ``RemoteNumber``. A parked call nobody takes comes back
  as an ordinary call to the phone that parked it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.translate.dial import DialRules
from bridge.translate.model import Emitted
from bridge.translate.parties import IN, OUT
from bridge.translate.wire import ext_fields

if TYPE_CHECKING:
    from bridge.ami.message import Message


class PickupRules(DialRules):
    """Pickup, ParkedCall, UnParkedCall."""

    def _on_pickup(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        picker = self._chan(msg)
        target = self.channels.get(msg.get("TargetUniqueid", ""))
        if picker is None or target is None:
            return
        if target.dial_outcome is None:
            target.dial_outcome = "CANCEL"  # answered elsewhere
        caller = self.channels.get(target.dialed_by or "")
        if caller is None:
            return
        # the picker stands where the rung phone stood: the caller's DialEnd names it next
        self._join_call(picker, target.call)
        picker.dialed_by = caller.uid
        caller.dials.append(picker.uid)
        ext = self._phones.get(picker.device or "")
        if ext is None:
            return
        src = self._origin(caller) or caller
        fields = self._party(src, caller).caller_fields(self._via(src))
        fields.update({"CalledNumber": ext.extended, **ext_fields("Called", ext)})
        comp = self._start(out, picker, ext, IN, ts, fields, kind="pickup")
        if picker.answered_dial_at is not None:
            # Asterisk sent the caller's DialEnd (ANSWER, naming the picker) first
            self._answer(out, comp, max(ts, picker.answered_dial_at))

    def _on_parkedcall(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        parkee = self.channels.get(msg.get("ParkeeUniqueid", ""))
        if parkee is not None:
            parkee.transferred_by = None  # the blind transfer that parked it is over

    def _on_unparkedcall(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        parkee = self.channels.get(msg.get("ParkeeUniqueid", ""))
        retriever = self.channels.get(msg.get("RetrieverUniqueid", ""))
        if parkee is None or retriever is None:
            return
        self._join_call(retriever, parkee.call)
        ext = self._phones.get(retriever.device or "")
        if ext is None or retriever.out_comp is not None:
            return
        fields = {
            **self._party(retriever).caller_fields(),
            "CalledNumber": self._dir.dialed(retriever.dialed or msg.get("ParkingSpace")),
            "RemoteNumber": self._party(parkee).num,
        }
        retriever.out_comp = self._start(out, retriever, ext, OUT, ts, fields, kind="park")
        self._answer(out, retriever.out_comp, ts)
