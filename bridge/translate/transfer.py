"""Transfers: the call goes on with the same CallID.

Blind transfer: the transferee's channel then dials the target; the target's visit is a
new component, called on behalf of the transferer (CallerIDNum), with the party it will
talk to, the transferee, as ``RemoteNumber`` (see :meth:`DialRules._phone_rung`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.translate.dial import DialRules
from bridge.translate.model import UNKNOWN_CID, Emitted, endpoint_of

if TYPE_CHECKING:
    from bridge.ami.message import Message


class TransferRules(DialRules):
    """BlindTransfer."""

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
        ext = self._phones.get(endpoint_of(msg.get("TransfererChannel", ""))[1] or "")
        if ext is not None:
            transferee.transferred_by = self._dir.phone(ext, name)
        else:
            transferee.transferred_by = self._dir.internal(msg.get("TransfererCallerIDNum", ""), name)
