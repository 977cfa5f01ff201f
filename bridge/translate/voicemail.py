"""Voicemail: when a message is left in the mailbox of extension E, E gets one
``voicemail`` event (CallFlow=in): the call's CallID, the caller, ``RecID`` = the
message's record id, ``Duration`` = its length.

Asterisk shows it as ``VarSet VM_MESSAGEFILE=.../<context>/<box>/INBOX/msgNNNN`` then
``VarSet VMSTATUS=SUCCESS`` on the channel that ran VoiceMail. RecID is minted like a
recorded call's (the daemon keeps the message's file under it), Duration is the time
from VoiceMail's start to the message saved; the daemon takes the length from the
spool's ``msgNNNN.txt`` when it can read it.
"""

from __future__ import annotations

from bridge.translate.dial import DialRules
from bridge.translate.model import Channel, Emitted, Recording, record_id
from bridge.translate.parties import IN
from bridge.translate.wire import ext_fields, ordered

#: the VarSets voicemail reads
VOICEMAIL_VARIABLES = frozenset({"VM_MESSAGEFILE", "VMSTATUS"})


class VoicemailRules(DialRules):
    """VoiceMail started (Newexten), the message file and status (VarSet)."""

    @staticmethod
    def _voicemail_started(chan: Channel, ts: int) -> None:
        chan.vm_started_at = ts

    def _voicemail_varset(self, out: list[Emitted], chan: Channel, name: str, value: str, ts: int) -> None:
        """VM_MESSAGEFILE (the message's file), then VMSTATUS=SUCCESS (it was left)."""
        if name == "VM_MESSAGEFILE" and value:
            chan.vm_file = value
        elif name == "VMSTATUS" and value == "SUCCESS" and chan.vm_file:
            self._voicemail(out, chan, ts)

    def _voicemail(self, out: list[Emitted], chan: Channel, ts: int) -> None:
        """One ``voicemail`` event for the mailbox's extension when a message was left."""
        path = (chan.vm_file or "").split("/")
        # .../voicemail/<context>/<box>/INBOX/msgNNNN
        if len(path) < 4:
            return
        context, box, folder, name = path[-4], path[-3], path[-2], path[-1]
        ext = self._mailboxes.get(f"{box}@{context}")
        if ext is None:
            return
        start = chan.vm_started_at or ts
        sub_id = self._sub_id(chan)
        uuid = record_id(ext.id, sub_id)
        fields = {
            **self._identity(chan),
            "EventType": "voicemail",
            "SubCallID": sub_id,
            "CallFlow": IN,
            **self._party(chan).caller_fields(self._via(chan)),
            "CalledNumber": ext.extended,
            **ext_fields("Called", ext),
            "EventTime": ts,
            "Duration": ts - start,
            "RecID": uuid,
        }
        out.append((ext.id, ordered(fields)))
        if self.keep_recordings:
            spool_name = f"{context}/{box}/{folder}/{name}"
            self.recordings.append(
                Recording(uuid, ext.id, out[-1][1], "voicemail", spool_name, chan.vm_file, None)
            )
        chan.vm_file = None
