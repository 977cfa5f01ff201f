"""Voicemail events take msg_id and duration from the spool when it is configured."""

from __future__ import annotations

from pathlib import Path

from bridge.voicemail import enrich

EVENT = {"EventType": "voicemail", "RecID": "default/102/INBOX/msg0000", "Duration": 8005412}
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


def test_spool_gives_msg_id_and_duration(tmp_path: Path) -> None:
    """With the .txt present, RecID is msg_id and Duration its seconds in microseconds."""
    box = tmp_path / "default" / "102" / "INBOX"
    box.mkdir(parents=True)
    (box / "msg0000.txt").write_text(INFO)
    out = enrich(EVENT, str(tmp_path))
    assert out["RecID"] == "1795730605-00000000" and out["Duration"] == 7_000_000


def test_missing_spool_or_file_keeps_the_ami_values(tmp_path: Path) -> None:
    """No spool configured, or no file: the event is unchanged; other events are untouched."""
    assert enrich(EVENT, None) == EVENT
    assert enrich(EVENT, str(tmp_path)) == EVENT
    assert enrich({"EventType": "hangup", "RecID": "x"}, str(tmp_path)) == {
        "EventType": "hangup",
        "RecID": "x",
    }
    assert enrich({**EVENT, "RecID": "../../etc/passwd"}, str(tmp_path))["RecID"] == "../../etc/passwd"


def test_a_duration_that_is_not_a_number_keeps_the_ami_value(tmp_path: Path) -> None:
    """duration=² (a digit to str.isdigit(), not to int()) or junk: msg_id is taken, the
    AMI Duration stays."""
    box = tmp_path / "default" / "102" / "INBOX"
    box.mkdir(parents=True)
    for junk in ("²", "7s", ""):
        (box / "msg0000.txt").write_text(INFO.replace("duration=7", f"duration={junk}"))
        out = enrich(EVENT, str(tmp_path))
        assert out["RecID"] == "1795730605-00000000" and out["Duration"] == EVENT["Duration"]
