"""Voicemail events take the message's duration from the spool when it is configured."""

from __future__ import annotations

from pathlib import Path

from bridge.translate.model import Recording
from bridge.voicemail import enrich

INFO = """;
; Message Information file
;
[message]
origmailbox=102
callerid="Anna" <101>
origtime=1795730605
msg_id=1795730605-00000000
duration=7
"""


def message(name: str = "default/102/INBOX/msg0000", kind: str = "voicemail") -> Recording:
    event = {"EventType": "voicemail", "RecID": "1102-0123456789abcdef0123456789abcdef", "Duration": 8005412}
    return Recording(event["RecID"], 1102, event, kind, name, f"/var/spool/asterisk/voicemail/{name}", None)


def test_spool_gives_the_duration(tmp_path: Path) -> None:
    """With the .txt present, Duration is its seconds in microseconds; RecID stays the
    bridge's record id."""
    box = tmp_path / "default" / "102" / "INBOX"
    box.mkdir(parents=True)
    (box / "msg0000.txt").write_text(INFO)
    rec = message()
    enrich(rec, str(tmp_path))
    assert rec.event["Duration"] == 7_000_000 and rec.event["RecID"] == rec.record_uuid


def test_missing_spool_or_file_keeps_the_ami_values(tmp_path: Path) -> None:
    """No spool configured, no file, a path escaping the spool, or a call recording: the
    event is unchanged."""
    for rec, spool in [(message(), None), (message(), str(tmp_path)), (message("../../etc/passwd"), str(tmp_path)),
                       (message(kind="call"), str(tmp_path))]:  # fmt: skip
        before = dict(rec.event)
        enrich(rec, spool)
        assert rec.event == before


def test_a_duration_that_is_not_a_number_keeps_the_ami_value(tmp_path: Path) -> None:
    """duration=² (a digit to str.isdigit(), not to int()) or junk: the AMI Duration stays."""
    box = tmp_path / "default" / "102" / "INBOX"
    box.mkdir(parents=True)
    for junk in ("²", "7s", ""):
        (box / "msg0000.txt").write_text(INFO.replace("duration=7", f"duration={junk}"))
        rec = message()
        enrich(rec, str(tmp_path))
        assert rec.event["Duration"] == 8005412
