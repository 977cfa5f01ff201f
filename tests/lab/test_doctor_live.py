"""`ami-bridge doctor` against the lab's real Asterisk: what is right, what is wrong, and how to fix it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config, parse_config
from bridge.doctor import diagnose
from tests.conftest import FIXTURES, REPO
from tests.lab.helpers import place

pytestmark = pytest.mark.lab


@pytest.mark.usefixtures("lab")
def test_doctor_passes_on_the_lab(tmp_path: Path) -> None:
    """The lab's configuration has no FAIL; the exit code says so."""
    proc = subprocess.run([sys.executable, "-m", "bridge", "doctor", "--config", str(FIXTURES / "lab.yaml")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    assert "OK    events come back with Timestamp" in proc.stdout
    assert "OK    queue sales (extension 1301) exists" in proc.stdout
    assert "FAIL" not in proc.stdout


@pytest.mark.usefixtures("lab")
async def test_doctor_names_missing_objects_and_the_fix() -> None:
    """An endpoint, a queue and a trunk Asterisk does not have are FAIL lines with a fix."""
    text = (FIXTURES / "lab.yaml").read_text().replace('endpoint: "105"', 'endpoint: "199"')
    text = text.replace("queue: sales", "queue: nosuchqueue").replace("trunks: [trunk]", "trunks: [trunk2]")
    report = await diagnose(parse_config(text))
    fails = [t for level, t in report.lines if level == "FAIL"]
    assert any(
        t.startswith("PJSIP endpoint 199 (extension 1105) does not exist") and "pjsip.conf" in t
        for t in fails
    )
    assert any(t.startswith("PJSIP endpoint trunk2 (trunk) does not exist") for t in fails)
    assert any(t.startswith("queue nosuchqueue (extension 1301) does not exist") and "queues.conf" in t
               for t in fails)  # fmt: skip
    assert len(fails) == 3


@pytest.mark.usefixtures("lab")
async def test_doctor_checks_each_technology_its_own_way() -> None:
    """A chan_sip peer is asked for with SIPshowpeer (Asterisk 22 has no chan_sip: a FAIL
    that says so); a technology the doctor cannot ask about is named, not failed."""
    text = (FIXTURES / "lab.yaml").read_text().replace('endpoint: "105"', 'endpoint: "SIP/105"')
    text = text.replace('endpoint: "104"', 'endpoint: "IAX2/office"')
    report = await diagnose(parse_config(text))
    fails = [t for level, t in report.lines if level == "FAIL"]
    assert len(fails) == 1 and fails[0].startswith("SIP/105 (extension 1105): this Asterisk has no SIP"), (
        fails
    )
    assert (
        "INFO",
        "IAX2/office (extension 1104): IAX2 devices are not checked; make sure it exists",
    ) in report.lines
    assert ("OK", "PJSIP endpoint 101 (extension 1101) exists") in report.lines


@pytest.mark.usefixtures("lab")
async def test_doctor_reports_a_refused_login() -> None:
    """A wrong secret is one FAIL line that says where to look."""
    text = (FIXTURES / "lab.yaml").read_text().replace("secret: lab-secret", "secret: wrong")
    report = await diagnose(parse_config(text))
    assert report.failed
    assert "login as 'bridge' refused" in report.lines[0][1] and "manager.conf" in report.lines[0][1]


@pytest.mark.usefixtures("lab")
async def test_doctor_watch_checks_channelvars_on_a_real_call() -> None:
    """With --watch during a call, the dialplan events and every channel variable are confirmed."""

    async def call(lab: Any) -> None:
        await asyncio.sleep(1.5)  # the doctor's static checks first
        await lab.phone("102", ring_ms=300)
        await lab.call("101", "Anna", "102", hold_ms=500)

    report, _ = await asyncio.gather(diagnose(load_config(FIXTURES / "lab.yaml"), watch=5), place(call))
    assert ("OK", "call and dialplan events arrive (read=call,dialplan)") in report.lines
    assert ("OK", "every configured channel variable is in channel events (channelvars)") in report.lines
