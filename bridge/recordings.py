"""Where a recording's file is on this machine, and whether it may be served.

Asterisk names a recording's file in its events (MixMonitor's ``MIXMONITOR_FILENAME``, a
voicemail message's ``VM_MESSAGEFILE`` without its format's extension), as *it* sees the
file system. ``recordings.path_map`` turns those directories into this machine's
(longest prefix first); a recording known only by its name (the dialplan's RECID, with
no MixMonitor seen) is looked for in ``recordings.dirs``. Whatever the path, the file is
served only if, once every symlink is resolved, it lies inside one of ``recordings.dirs``:
an id or a path from AMI never reaches outside them.
"""

from __future__ import annotations

import os
from pathlib import Path

from bridge.config import RecordingsConfig

#: the extensions a voicemail message's audio may have (Asterisk's formats), in order
VOICEMAIL_FORMATS = (".wav", ".WAV", ".gsm", ".mp3", ".ogg", ".g722", ".sln")
#: Content-Type by file extension (what players expect; mimetypes says audio/x-wav)
CONTENT_TYPES = {
    ".wav": "audio/wav", ".mp3": "audio/mpeg", ".gsm": "audio/x-gsm", ".ogg": "audio/ogg",
    ".g722": "audio/G722", ".sln": "audio/L16",
}  # fmt: skip
#: how deep the directories are searched for a recording known only by its name
#: (FreePBX files them by date: monitor/YYYY/MM/DD/)
SEARCH_DEPTH = 4


class NotServable(Exception):
    """The file of a recording cannot be served: why, in words for the API's answer."""


def mapped(path: str, config: RecordingsConfig) -> str:
    """``path`` as this machine sees it, through ``path_map`` (longest prefix first)."""
    for src in sorted(config.path_map, key=len, reverse=True):
        prefix = src.rstrip("/")
        if path == prefix or path.startswith(prefix + "/"):
            return config.path_map[src].rstrip("/") + path[len(prefix) :]
    return path


def inside(real: str, config: RecordingsConfig) -> bool:
    """Whether a resolved path lies inside one of the configured directories."""
    for d in config.dirs:
        root = os.path.realpath(d)
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return True
    return False


def locate(kind: str, name: str, path: str | None, config: RecordingsConfig) -> Path:
    """The file of a recording on this machine, checked to lie inside ``recordings.dirs``."""
    if not config.dirs:
        raise NotServable("recordings.dirs is not set in the bridge's configuration: it serves no files")
    candidates: list[str] = []
    if path:
        local = mapped(path, config)
        candidates = [local + ext for ext in VOICEMAIL_FORMATS] if kind == "voicemail" else [local]
    elif kind == "call" and name and "/" not in name and name not in (".", ".."):
        candidates = _search(name, config)
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if os.path.isfile(real):
            if not inside(real, config):
                raise NotServable("the recording's file is outside recordings.dirs")
            return Path(real)
    raise NotServable("the recording's file is not there (moved, deleted, or not under recordings.path_map)")


def _search(name: str, config: RecordingsConfig) -> list[str]:
    """Files named ``<name>.<ext>`` in the configured directories (a few levels deep)."""
    found: list[str] = []
    for d in config.dirs:
        base = d.rstrip("/").count("/")
        for root, dirs, files in os.walk(d):
            if root.rstrip("/").count("/") - base >= SEARCH_DEPTH:
                dirs[:] = []
            found += [os.path.join(root, f) for f in sorted(files) if f.rpartition(".")[0] == name]
            if found:
                return found
    return found


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
