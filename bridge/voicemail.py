"""Voicemail details from Asterisk's spool: the message id and length of a left message.

The translator names a message by its spool path (``default/102/INBOX/msg0000``) and
measures its length from AMI timestamps. When ``voicemail.spool`` points at Asterisk's
voicemail directory (as this machine sees it), the daemon reads ``msgNNNN.txt`` and
uses its ``msg_id`` as RecID and its ``duration`` (seconds) as Duration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_message_info(path: Path) -> dict[str, str]:
    """``key=value`` lines of a voicemail ``.txt`` file (section headers and comments skipped)."""
    info: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" in line and not line.startswith((";", "[")):
            key, _, value = line.partition("=")
            info[key.strip()] = value.strip()
    return info


def enrich(event: dict[str, Any], spool: str | None) -> dict[str, Any]:
    """A voicemail event with RecID/Duration from the spool, when it can be read."""
    if event.get("EventType") != "voicemail" or not spool or not event.get("RecID"):
        return event
    rel = str(event["RecID"])
    if ".." in rel.split("/"):
        return event
    txt = Path(spool) / f"{rel}.txt"
    try:
        info = read_message_info(txt)
    except OSError as err:
        log.warning("voicemail info %s unreadable (%s); keeping the AMI values", txt, err.strerror)
        return event
    out = dict(event)
    if info.get("msg_id"):
        out["RecID"] = info["msg_id"]
    duration = info.get("duration", "")
    if duration.isascii() and duration.isdigit():
        out["Duration"] = int(duration) * 1_000_000
    return out
