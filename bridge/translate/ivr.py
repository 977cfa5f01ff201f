"""IVRs (dialplan contexts configured as ``ivr`` extensions).

``dial-in`` when the call enters the IVR's context, ``hangup`` when the call is released,
with ``Bridged=yes`` (and BridgedDuration) if a person answered after it; no dial-out or
answer. The IVR answers the call: a phone that called it gets its own ``answer`` then,
and the IVR's hangup is ANSWER with Duration from that answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.translate.dial import DialRules
from bridge.translate.model import Channel, Emitted
from bridge.translate.parties import IN

if TYPE_CHECKING:
    from bridge.config import Extension


class IvrRules(DialRules):
    """Entering an IVR context (Newexten) and the IVR answering (Newstate Up)."""

    def _ivr_entered(self, out: list[Emitted], chan: Channel, ivr: Extension, ts: int) -> None:
        """``chan`` runs the dialplan context of ``ivr``."""
        if not any(c.kind == "ivr" and not c.ended for c in chan.comps):
            self._start_caller(out, chan, ts, None, ivr)
            self._start(out, chan, ivr, IN, ts, self._reached_fields(chan, ivr), kind="ivr")

    def _ivr_answered(self, out: list[Emitted], chan: Channel, ts: int) -> None:
        """``chan`` went Up: a phone that called an IVR is answered by it."""
        if chan.out_comp is not None and any(c.kind == "ivr" for c in chan.comps):
            self._answer(out, chan.out_comp, ts)
