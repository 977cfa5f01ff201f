"""Voicemail details from Asterisk's spool: the length of a left message.

The translator measures a message's length from AMI timestamps (VoiceMail's start to
the message saved, greeting included). When ``voicemail.spool`` points at Asterisk's
voicemail directory (as this machine sees it), the daemon reads the message's
``msgNNNN.txt`` and takes its ``duration`` (seconds) as the event's Duration.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bridge.translate.model import Recording

log = logging.getLogger(__name__)


def read_message_info(path: Path) -> dict[str, str]:
    """``key=value`` lines of a voicemail ``.txt`` file (section headers and comments skipped)."""
    info: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" in line and not line.startswith((";", "[")):
            key, _, value = line.partition("=")
            info[key.strip()] = value.strip()
    return info


def enrich(recording: Recording, spool: str | None) -> None:
    """A left message's event takes Duration from the spool, when it can be read (the
    event is changed in place: it is the one about to be committed)."""
    if recording.kind != "voicemail" or not spool:
        return
    rel = recording.name  # context/box/folder/msgNNNN
    if ".." in rel.split("/"):
        return
    txt = Path(spool) / f"{rel}.txt"
    try:
        info = read_message_info(txt)
    except OSError as err:
        log.warning("voicemail info %s unreadable (%s); keeping the AMI values", txt, err.strerror)
        return
    duration = info.get("duration", "")
    if duration.isascii() and duration.isdigit():
        recording.event["Duration"] = int(duration) * 1_000_000
