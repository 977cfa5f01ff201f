"""SIP MESSAGE: no AMI event of its own. The documented dialplan snippet runs in the
endpoints' ``message_context`` and emits ``UserEvent: ExtensionMessage`` (From, To,
Body in base64); the sender gets ``message-out``, the receiver ``message-in``, with
CallID = SubCallID = the message's id and the text in ``Message``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from bridge.translate.model import Emitted
from bridge.translate.parties import IN, OUT
from bridge.translate.state import State
from bridge.translate.wire import ext_fields, ordered

if TYPE_CHECKING:
    from bridge.ami.message import Message


class MessageRules(State):
    """UserEvent ExtensionMessage."""

    def _on_userevent(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        if msg.get("UserEvent") != "ExtensionMessage":
            return
        src, dst = msg.get("From", ""), msg.get("To", "")
        try:
            text = base64.b64decode(msg.get("Body", ""), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = msg.get("Body", "")
        msg_id = msg.get("Uniqueid") or f"msg-{ts}"
        src_ext, dst_ext = self._dir.named(src), self._dir.named(dst)
        base = {
            "CallID": msg_id,
            "SubCallID": msg_id,
            "CallerIDNum": src_ext.extended if src_ext is not None else src,
            "CalledNumber": dst_ext.extended if dst_ext is not None else dst,
            **ext_fields("Caller", src_ext),
            **ext_fields("Called", dst_ext),
            "EventTime": ts,
            "Message": text,
        }
        for ext, kind, flow in ((src_ext, "message-out", OUT), (dst_ext, "message-in", IN)):
            if ext is not None:
                fields = {"EventType": kind, **base, "CallFlow": flow}
                out.append((ext.id, ordered(fields, ("Message",))))
