"""Scenario driver of the lab: places real calls with sipp and records the AMI stream.

    python lab/driver.py list                 the scenarios and what each does
    python lab/driver.py record NAME [NAME..] record fixtures/NAME.ami and NAME.md
    python lab/driver.py record --all         every scenario
    python lab/driver.py play NAME            place the calls, keep no recording

The lab must be up (``lab/lab.sh up``). Each scenario starts the sipp agents it needs
(phones answer at 127.0.0.1:16<ext>, the carrier at 127.0.0.2:15070), places its calls
and AMI actions, and the recorder (``bridge.record``, the same code as
``ami-bridge record``) logs in as the bridge's own AMI user and writes every byte after
login until the PBX is idle again. sipp PIDs are kept in the lab cache so that
``lab/lab.sh down`` stops whatever a crashed run left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import sippgen  # noqa: E402
from panoramisk import Manager  # noqa: E402

from bridge.ami.message import parse, split_stream  # noqa: E402
from bridge.record import Recorder  # noqa: E402

CACHE = Path(os.environ.get("LAB_CACHE", "/var/cache/ami-bridge-lab"))
ROOT = CACHE / "chroot"
RUN_DIR = "/opt/ami-bridge-lab/run"  # inside the chroot
AMI = ("127.0.0.1", 15038)
CARRIER_IP = "127.0.0.2"
#: the FreePBX-style profile's carrier (trunk fpbx-trunk, extensions_freepbx.conf)
FREEPBX_CARRIER_IP = "127.0.0.3"
EXTERNAL = "+79161234567"


class ScenarioError(Exception):
    """A scenario did not go as planned (sipp failed, an AMI action was refused...)."""


@dataclass
class Agent:
    name: str
    proc: asyncio.subprocess.Process
    pidfile: Path
    log: Path


class Lab:
    """What a scenario can do: start sipp agents, place calls, send AMI actions."""

    def __init__(self, rec: Recorder | None, ami: Manager) -> None:
        self.rec = rec
        self.ami = ami
        self.agents: list[Agent] = []
        self._port = 0
        (ROOT / RUN_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def _ports(self) -> tuple[int, int]:
        """A fresh (media, control) port pair for one sipp."""
        self._port += 1
        return 40000 + self._port * 20, 8800 + self._port

    async def _sipp(self, name: str, xml: str, ip: str, port: int, uac: bool) -> Agent:
        path = f"{RUN_DIR}/{name}.xml"
        (ROOT / path.lstrip("/")).write_text(xml)
        media, control = self._ports()
        log = CACHE / f"sipp-{name}.log"
        args = ["chroot", str(ROOT), "sipp"]
        if uac:
            args += ["127.0.0.1:15060", "-m", "1", "-timeout", "120", "-timeout_error"]
        args += [
            "-sf",
            path,
            "-i",
            ip,
            "-p",
            str(port),
            "-mi",
            ip,
            "-mp",
            str(media),
            "-cp",
            str(control),
            "-nostdin",
            "-aa",
            "-trace_err",
            "-error_file",
            f"{RUN_DIR}/{name}.errors.log",
            "-skip_rlimit",
        ]
        with open(log, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
            )
        pidfile = CACHE / f"sipp-{proc.pid}.pid"
        pidfile.write_text(str(proc.pid))
        agent = Agent(name, proc, pidfile, log)
        self.agents.append(agent)
        if not uac:
            # an agent that cannot load its scenario or bind its port exits at once
            await asyncio.sleep(0.3)
            if proc.returncode is not None:
                tail = log.read_text(errors="replace")[-1500:]
                raise ScenarioError(f"sipp {name} exited {proc.returncode} at start:\n{tail}")
        return agent

    async def phone(self, ext: str, action: str = "answer", **kw: object) -> None:
        """Phone ``ext`` answers the calls Asterisk sends it (see sippgen.uas)."""
        await self._sipp(f"uas-{ext}", sippgen.uas(ext, action, **kw), "127.0.0.1", 16000 + int(ext), False)

    async def carrier(self, action: str = "answer", ip: str = CARRIER_IP, **kw: object) -> None:
        """The carrier answers calls sent to the trunk (``ip``: FREEPBX_CARRIER_IP for the
        FreePBX-style profile's trunk)."""
        await self._sipp("uas-carrier", sippgen.uas("carrier", action, **kw), ip, 15070, False)

    async def message_phone(self, ext: str) -> None:
        await self._sipp(f"msg-{ext}", sippgen.message_uas(ext), "127.0.0.1", 16000 + int(ext), False)

    def call(self, ext: str, name: str, target: str, **kw: object) -> Awaitable[None]:
        """Phone ``ext`` calls ``target``; await the result to wait for the call's end."""
        xml = sippgen.uac(ext, name, target, **kw)  # type: ignore[arg-type]
        return self._run_uac(f"uac-{ext}-{target}", xml, "127.0.0.1", 17000 + int(ext))

    def inbound(self, caller: str, did: str, ip: str = CARRIER_IP, **kw: object) -> Awaitable[None]:
        """The carrier delivers a call from ``caller`` to DID ``did``."""
        xml = sippgen.uac(caller, "", did, **kw)  # type: ignore[arg-type]
        return self._run_uac(f"uac-carrier-{did}", xml, ip, 15071)

    def message(self, ext: str, name: str, target: str, text: str) -> Awaitable[None]:
        return self._run_uac(
            f"msg-{ext}-{target}", sippgen.message_uac(ext, name, target, text), "127.0.0.1", 17000 + int(ext)
        )

    async def _run_uac(self, name: str, xml: str, ip: str, port: int) -> None:
        agent = await self._sipp(name, xml, ip, port, True)
        rc = await agent.proc.wait()
        agent.pidfile.unlink(missing_ok=True)
        if rc != 0:
            tail = agent.log.read_text(errors="replace")[-1500:]
            raise ScenarioError(f"sipp {name} exited {rc}:\n{tail}")

    async def action(self, **fields: str) -> dict[str, str]:
        """Send an AMI action on the lab's own connection; raise if refused."""
        # as_list=False: panoramisk would otherwise wait for more messages after any
        # "... successfully queued" answer (Atxfer, Originate) and never return.
        resp = await self.ami.send_action(dict(fields), as_list=False)
        if isinstance(resp, list):
            resp = resp[0]
        if resp.get("Response") == "Error":
            raise ScenarioError(f"AMI {fields.get('Action')} refused: {resp.get('Message')}")
        return dict(resp)

    async def callback(self, owner: str, dest: str, callback_id: str, tag: str, timeout_ms: int) -> None:
        """AMI Originate as a callback: ring ``owner`` first, then dial ``dest``."""
        await self.action(
            Action="Originate", Channel=f"PJSIP/{owner}", Context="callback", Exten=dest, Priority="1",
            CallerID=f'"Callback" <{dest}>', Timeout=str(timeout_ms), Async="true",
            ChannelId=f"cb-{callback_id}",  # the bridge's own convention (bridge/api/control.py)
            Variable=[f"__CALLBACKID={callback_id}", f"__TAG={tag}"],  # type: ignore[arg-type]
        )  # fmt: skip

    async def db(self, family: str, key: str, value: str) -> None:
        await self.action(Action="DBPut", Family=family, Key=key, Val=value)

    async def channel(self, prefix: str, timeout: float = 10.0) -> str:
        """Wait for a live channel whose name starts with ``prefix``."""
        deadline = time.monotonic() + timeout
        if self.rec is None:
            raise ScenarioError("this Lab has no recorder to find channels with")
        while time.monotonic() < deadline:
            name = self.rec.live_channel(prefix)
            if name:
                return name
            await asyncio.sleep(0.05)
        raise ScenarioError(f"no live channel {prefix}*")

    async def close(self) -> None:
        for agent in self.agents:
            if agent.proc.returncode is None:
                agent.proc.terminate()
                try:
                    await asyncio.wait_for(agent.proc.wait(), 5)
                except TimeoutError:
                    agent.proc.kill()
                    await agent.proc.wait()
            agent.pidfile.unlink(missing_ok=True)


Scenario = Callable[[Lab], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


# ---- the scenarios --------------------------------------------------------------------
# Each docstring is copied into fixtures/NAME.md: say what happened, for a reviewer.


@scenario
async def internal_answered_caller_hangup(lab: Lab) -> None:
    """101 (Anna) calls 102 (Boris); 102 answers after 1 s; 101 hangs up after 3 s of talk."""
    await lab.phone("102", ring_ms=1000)
    await lab.call("101", "Anna", "102", hold_ms=3000)


@scenario
async def internal_answered_callee_hangup(lab: Lab) -> None:
    """101 calls 102; 102 answers after 1 s and hangs up after 2 s of talk."""
    await lab.phone("102", ring_ms=1000, hold_ms=2000)
    await lab.call("101", "Anna", "102", hold_ms=None)


@scenario
async def internal_busy(lab: Lab) -> None:
    """101 calls 102; 102 answers 486 Busy Here after 1 s of ringing."""
    await lab.phone("102", "busy", ring_ms=1000)
    await lab.call("101", "Anna", "102")


@scenario
async def internal_noanswer(lab: Lab) -> None:
    """101 calls 102; 102 rings and never answers; Dial gives up after its 10 s timeout."""
    await lab.phone("102", "ring")
    await lab.call("101", "Anna", "102")


@scenario
async def internal_cancel(lab: Lab) -> None:
    """101 calls 102; 102 rings; 101 hangs up (CANCEL) after 2 s, before any answer."""
    await lab.phone("102", "ring")
    await lab.call("101", "Anna", "102", cancel_ms=2000)


@scenario
async def internal_chanunavail(lab: Lab) -> None:
    """101 calls 106, a phone with no contact: Dial fails at once (CHANUNAVAIL, no DialBegin)."""
    await lab.call("101", "Anna", "106")


@scenario
async def internal_congestion(lab: Lab) -> None:
    """101 calls 102; 102 answers 503 Service Unavailable after 1 s (CONGESTION)."""
    await lab.phone("102", "congestion", ring_ms=1000)
    await lab.call("101", "Anna", "102")


@scenario
async def inbound_did_recorded(lab: Lab) -> None:
    """+74957654321 calls DID 74951230001 through the trunk with `Diversion` and
    `Client-Api-Id` headers; the DID route records (MixMonitor, RECID) and rings 101,
    which answers after 1 s; the caller talks (audio) and hangs up after 4 s."""
    await lab.phone("101", ring_ms=1000, audio=True)
    await lab.inbound(
        "+74957654321",
        "74951230001",
        hold_ms=4000,
        audio=True,
        headers={
            "Diversion": "<sip:+74951112233@carrier.example>;reason=unconditional",
            "Client-Api-Id": "crm-4711-Az",
        },
    )


@scenario
async def inbound_busy(lab: Lab) -> None:
    """+74957654321 calls DID 74951230005, routed to 102, which answers 486 Busy."""
    await lab.phone("102", "busy", ring_ms=1000)
    await lab.inbound("+74957654321", "74951230005")


@scenario
async def ivr_caller_hangup(lab: Lab) -> None:
    """+74957654321 calls DID 74951230002 (the IVR); the IVR answers and plays its
    prompt; the caller presses nothing and hangs up after 3 s."""
    await lab.inbound("+74957654321", "74951230002", hold_ms=3000)


@scenario
async def ivr_to_phone(lab: Lab) -> None:
    """+74957654321 calls the IVR (DID 74951230002), presses 1 after 1.5 s; the IVR
    dials 102, which answers after 1 s; the caller hangs up after 6 s in all."""
    await lab.phone("102", ring_ms=1000)
    await lab.inbound("+74957654321", "74951230002", hold_ms=6000, dtmf=("1", 1500))


@scenario
async def queue_answered_second_member(lab: Lab) -> None:
    """101 calls 300, the queue `support` (ringall over PJSIP/102 and PJSIP/103); both
    ring; 103 (the second member) answers after 3 s, 102 is cancelled; 101 hangs up
    after 3 s of talk."""
    await lab.phone("102", "ring")
    await lab.phone("103", ring_ms=3000)
    await lab.call("101", "Anna", "300", hold_ms=3000)


@scenario
async def queue_abandoned(lab: Lab) -> None:
    """101 calls the queue `support`; 102 and 103 ring; 101 gives up (CANCEL) after
    4 s, nobody answered."""
    await lab.phone("102", "ring")
    await lab.phone("103", "ring")
    await lab.call("101", "Anna", "300", cancel_ms=4000)


@scenario
async def queue_local_members(lab: Lab) -> None:
    """101 calls 301, the queue `sales` whose members are Local/104@queue-members and
    Local/105@queue-members; both ring; 105 answers after 2 s (with audio, so the
    Local channels may optimize away); 101 hangs up after 4 s of talk."""
    await lab.phone("104", "ring")
    await lab.phone("105", ring_ms=2000, audio=True)
    await lab.call("101", "Anna", "301", hold_ms=4000, audio=True)


@scenario
async def forward_external_from_trunk(lab: Lab) -> None:
    """104 forwards all calls to +79161234567 (AstDB CF/104). +74957654321 calls DID
    74951230004 (104's number); the call leaves through Local/…@outbound to the trunk
    (FORWARDED_FROM=104); the carrier answers after 1 s and hangs up after 3 s."""
    await lab.db("CF", "104", EXTERNAL)
    await lab.carrier(ring_ms=1000, hold_ms=3000)
    await lab.inbound("+74957654321", "74951230004", hold_ms=None)


@scenario
async def forward_external_internal(lab: Lab) -> None:
    """104 forwards all calls to +79161234567. 101 calls 104; the call goes out
    through the trunk (FORWARDED_FROM=104); the carrier answers after 1 s; 101 hangs
    up after 3 s."""
    await lab.db("CF", "104", EXTERNAL)
    await lab.carrier(ring_ms=1000)
    await lab.call("101", "Anna", "104", hold_ms=3000)


@scenario
async def outbound_external(lab: Lab) -> None:
    """101 calls +79161234567 through the trunk (the dialplan presents ANI
    +74951230000); the carrier answers after 2 s; 101 hangs up after 3 s."""
    await lab.carrier(ring_ms=2000)
    await lab.call("101", "Anna", EXTERNAL, hold_ms=3000)


@scenario
async def callback_answered(lab: Lab) -> None:
    """AMI Originate on behalf of 101 to +79817654321 (Channel PJSIP/101, context
    `callback`, __CALLBACKID=cb-0001, __TAG=campaign-7): 101 answers after 1 s, the
    destination is dialed through the trunk, the carrier answers after 1 s and hangs
    up after 3 s."""
    await lab.phone("101", ring_ms=1000)
    await lab.carrier(ring_ms=1000, hold_ms=3000)
    await lab.callback("101", "+79817654321", "cb-0001", "campaign-7", timeout_ms=15000)


@scenario
async def callback_unanswered(lab: Lab) -> None:
    """AMI Originate on behalf of 101 to +79817654321 (__CALLBACKID=cb-0002,
    __TAG=campaign-7); 101 rings and never answers; the Originate times out after 6 s
    (OriginateResponse Failure); the destination is never dialed."""
    await lab.phone("101", "ring")
    await lab.callback("101", "+79817654321", "cb-0002", "campaign-7", timeout_ms=6000)


@scenario
async def callback_failed(lab: Lab) -> None:
    """AMI Originate on behalf of 106, a phone with no contact, to +79817654321
    (ChannelId cb-cb-0003, __CALLBACKID=cb-0003): Asterisk creates no channel at all
    and answers OriginateResponse Failure, Reason 0."""
    await lab.callback("106", "+79817654321", "cb-0003", "campaign-7", timeout_ms=6000)
    await asyncio.sleep(1.0)


@scenario
async def voicemail(lab: Lab) -> None:
    """Voicemail on no answer for 102 (AstDB VM/102=1). 101 calls 102; 102 rings 6 s
    without answer; VoiceMail(102@default) answers, 101 speaks (audio) and hangs up
    after 8 s: one message is left in 102's INBOX."""
    await lab.db("VM", "102", "1")
    await lab.phone("102", "ring")
    await lab.call("101", "Anna", "102", hold_ms=8000, audio=True)


@scenario
async def blind_transfer_refer(lab: Lab) -> None:
    """101 calls 102; 102 answers after 1 s; 2 s later 101 blind-transfers 102 to 103
    with SIP REFER; Asterisk hangs up 101; 103 answers after 1 s and hangs up after 3 s."""
    await lab.phone("102", ring_ms=1000)
    await lab.phone("103", ring_ms=1000, hold_ms=3000)
    await lab.call("101", "Anna", "102", refer_to=("103", 2000))


@scenario
async def blind_transfer_ami(lab: Lab) -> None:
    """101 calls 102; 102 answers after 1 s; 2 s later the AMI action BlindTransfer on
    101's channel sends 102 to 103 (context `phones`); 101 is hung up; 103 answers
    after 1 s and hangs up after 3 s."""
    await lab.phone("102", ring_ms=1000)
    await lab.phone("103", ring_ms=1000, hold_ms=3000)
    call = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    chan = await lab.channel("PJSIP/102-")
    await asyncio.sleep(3.0)
    await lab.action(
        Action="BlindTransfer", Channel=await lab.channel("PJSIP/101-"), Context="phones", Exten="103"
    )
    del chan
    await call


@scenario
async def attended_transfer(lab: Lab) -> None:
    """101 calls 102; 102 answers after 1 s; 2 s later AMI Atxfer on 101's channel
    consults 103 (102 waits); 103 answers after 1 s; 3 s later 101 hangs up, which
    completes the transfer: 102 talks to 103 until 103 hangs up 4 s later."""
    await lab.phone("102", ring_ms=1000)
    await lab.phone("103", ring_ms=1000, hold_ms=7000)
    call = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(3.0)
    first = await lab.channel("PJSIP/101-")
    await lab.action(Action="Atxfer", Channel=first, Context="phones", Exten="103")
    await lab.channel("PJSIP/103-")
    await asyncio.sleep(4.0)
    await lab.action(Action="Hangup", Channel=first)
    await call


@scenario
async def sip_message(lab: Lab) -> None:
    """101 sends a SIP MESSAGE "Привет, 102! Call me back" to 102; the dialplan's
    message_context emits UserEvent ExtensionMessage (body in base64) and delivers it
    to 102, which accepts it (UserEvent ExtensionMessageStatus, Status SUCCESS)."""
    await lab.message_phone("102")
    await lab.message("101", "Anna", "102", "Привет, 102! Call me back")
    await asyncio.sleep(1.0)


@scenario
async def overlapping_calls(lab: Lab) -> None:
    """Two calls at once: 101 calls 102 (answers after 1 s, 101 hangs up after 4 s);
    1 s after the first started, 103 calls 104 (answers after 1 s, 104 hangs up after
    2 s): the second call starts and ends inside the first."""
    await lab.phone("102", ring_ms=1000)
    await lab.phone("104", ring_ms=1000, hold_ms=2000)
    first = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=4000))
    await asyncio.sleep(1.0)
    await lab.call("103", "Clara", "104", hold_ms=None)
    await first


@scenario
async def ring_group_answered(lab: Lab) -> None:
    """101 calls 600, the ring group Dial(PJSIP/102&PJSIP/103): both ring; 103 answers
    after 2 s (102 is cancelled); 101 hangs up after 3 s of talk."""
    await lab.phone("102", "ring")
    await lab.phone("103", ring_ms=2000)
    await lab.call("101", "Anna", "600", hold_ms=3000)


@scenario
async def ring_group_noanswer(lab: Lab) -> None:
    """101 calls the ring group 600; 102 and 103 ring and nobody answers: Dial gives up
    after its 10 s timeout (NOANSWER)."""
    await lab.phone("102", "ring")
    await lab.phone("103", "ring")
    await lab.call("101", "Anna", "600")


@scenario
async def ring_group_local(lab: Lab) -> None:
    """101 calls 601, the ring group of Local channels (Local/104@rg-member/n &
    Local/105@rg-member/n): both phones ring; 105 answers after 2 s; 101 hangs up after
    3 s of talk."""
    await lab.phone("104", "ring")
    await lab.phone("105", ring_ms=2000)
    await lab.call("101", "Anna", "601", hold_ms=3000)


@scenario
async def ring_group_from_did(lab: Lab) -> None:
    """+74957654321 calls DID 74951230006, routed to the ring group 600: 102 answers after
    1 s, 103 is cancelled; the caller hangs up after 3 s of talk."""
    await lab.phone("102", ring_ms=1000)
    await lab.phone("103", "ring")
    await lab.inbound("+74957654321", "74951230006", hold_ms=3000)


@scenario
async def followme_external(lab: Lab) -> None:
    """104 follows me to +79161234567 (AstDB FM/104): 101 calls 104; the dialplan rings
    PJSIP/104 and, through Local/…@outbound, the mobile at once (FORWARDED_FROM=104);
    104 only rings, the mobile (the carrier) answers after 1 s; 101 hangs up after 3 s."""
    await lab.db("FM", "104", EXTERNAL)
    await lab.phone("104", "ring")
    await lab.carrier(ring_ms=1000)
    await lab.call("101", "Anna", "104", hold_ms=3000)


@scenario
async def pickup_directed(lab: Lab) -> None:
    """101 calls 102, which rings; after 2 s 103 dials **102 (Pickup(102@PICKUPMARK)) and
    takes the call: 102 stops ringing, 101 talks to 103; 103 hangs up after 3 s."""
    await lab.phone("102", "ring")
    placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(2.0)
    await lab.call("103", "Clara", "**102", hold_ms=3000)
    await placed


@scenario
async def pickup_group(lab: Lab) -> None:
    """101 calls 102, which rings; after 2 s 103 dials *8 (group pickup: every phone is in
    pickup group "lab") and takes the call; 103 hangs up after 3 s."""
    await lab.phone("102", "ring")
    placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(2.0)
    await lab.call("103", "Clara", "*8", hold_ms=3000)
    await placed


@scenario
async def park_retrieve(lab: Lab) -> None:
    """101 calls 102; 102 answers after 1 s; 2 s later 102 parks 101 (AMI BlindTransfer
    of 102's channel to 700: 101 waits in slot 701, 102 is hung up); 2 s later 103 dials
    701 and takes the call; 103 hangs up after 3 s."""
    await lab.phone("102", ring_ms=1000)
    placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(3.0)
    await lab.action(Action="BlindTransfer", Channel=await lab.channel("PJSIP/102-"), Context="phones",
                     Exten="700")  # fmt: skip
    await asyncio.sleep(2.0)
    await lab.call("103", "Clara", "701", hold_ms=3000)
    await placed


@scenario
async def park_timeout(lab: Lab) -> None:
    """101 calls 102; 102 answers after 1 s; 2 s later 102 parks 101 (blind transfer to
    700); nobody takes it: after the lot's 5 s the call comes back to 102, which answers
    after 1 s and hangs up after 2 s."""
    await lab.phone("102", ring_ms=1000, hold_ms=5000)
    placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(3.0)
    await lab.action(Action="BlindTransfer", Channel=await lab.channel("PJSIP/102-"), Context="phones",
                     Exten="700")  # fmt: skip
    await placed


@scenario
async def conference(lab: Lab) -> None:
    """101, 102 and 103 dial 800, the ConfBridge room, 1 s apart; they leave after 6, 4
    and 2 s in the room."""
    first = asyncio.ensure_future(lab.call("101", "Anna", "800", hold_ms=6000))
    await asyncio.sleep(1.0)
    second = asyncio.ensure_future(lab.call("102", "Boris", "800", hold_ms=4000))
    await asyncio.sleep(1.0)
    await lab.call("103", "Clara", "800", hold_ms=2000)
    await second
    await first


@scenario
async def call_waiting(lab: Lab) -> None:
    """101 calls 102, which answers after 1 s and talks for 6 s; 2 s into that call 103
    calls 102 too: the second call rings (call waiting) and is not answered; 103 gives
    up after 2 s."""
    await lab.phone("102", ring_ms=1000, hold_ms=6000, ring_from="103")
    first = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(3.0)
    await lab.call("103", "Clara", "102", cancel_ms=2000)
    await first


@scenario
async def transfer_chain(lab: Lab) -> None:
    """+74957654321 calls DID 74951230006, the ring group 600; 102 answers after 1 s (103
    is cancelled); 2 s later AMI BlindTransfer of 102's channel sends the caller to 601,
    the ring group of Local channels; 104 answers after 1 s (105 is cancelled); 2 s
    later AMI Atxfer of 104's channel consults 102 (after the "transfer" prompt), which
    answers after 1 s; 1.5 s later 104 hangs up, completing the transfer: the caller talks
    to 102 until it hangs up 3 s later."""
    await lab.phone("102", ring_ms=1000)
    await lab.phone("103", "ring")
    await lab.phone("104", ring_ms=1000)
    await lab.phone("105", "ring")
    placed = asyncio.ensure_future(lab.inbound("+74957654321", "74951230006", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(3.0)
    await lab.action(Action="BlindTransfer", Channel=await lab.channel("PJSIP/102-"), Context="phones",
                     Exten="601")  # fmt: skip
    await lab.channel("PJSIP/104-")
    await asyncio.sleep(3.0)
    agent = await lab.channel("PJSIP/104-")
    await lab.action(Action="Atxfer", Channel=agent, Context="phones", Exten="102")
    await lab.channel("PJSIP/102-")  # after the "transfer" prompt
    await asyncio.sleep(2.5)
    await lab.action(Action="Hangup", Channel=agent)
    await asyncio.sleep(3.0)
    await lab.action(Action="Hangup", Channel=await lab.channel("PJSIP/102-"))
    await placed


@scenario
async def attended_transfer_external(lab: Lab) -> None:
    """101 calls 102; 102 answers after 1 s; 2 s later AMI Atxfer of 101's channel
    consults +79161234567 through the trunk; the carrier answers after 1 s; 2 s later
    101 hangs up, completing the transfer: 102 talks to the outside number until it
    hangs up 3 s later."""
    await lab.phone("102", ring_ms=1000, hold_ms=None)
    await lab.carrier(ring_ms=1000, hold_ms=None)
    placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(3.0)
    first = await lab.channel("PJSIP/101-")
    await lab.action(Action="Atxfer", Channel=first, Context="phones", Exten=EXTERNAL)
    await lab.channel("PJSIP/trunk-")
    await asyncio.sleep(3.0)
    await lab.action(Action="Hangup", Channel=first)
    await asyncio.sleep(3.0)
    await lab.action(Action="Hangup", Channel=await lab.channel("PJSIP/102-"))
    await placed


@scenario
async def attended_transfer_blonde(lab: Lab) -> None:
    """101 calls 102; 102 answers after 1 s; 2 s later AMI Atxfer of 101's channel
    consults 103, which rings; 101 hangs up before 103 answers (a "blonde" transfer): 103
    answers 2 s after it started ringing and talks to 102 until it hangs up after 3 s."""
    await lab.phone("102", ring_ms=1000, hold_ms=None)
    await lab.phone("103", ring_ms=2000, hold_ms=3000)
    placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
    await lab.channel("PJSIP/102-")
    await asyncio.sleep(3.0)
    first = await lab.channel("PJSIP/101-")
    await lab.action(Action="Atxfer", Channel=first, Context="phones", Exten="103")
    await lab.channel("PJSIP/103-")
    await asyncio.sleep(0.5)
    await lab.action(Action="Hangup", Channel=first)
    await placed


@scenario
async def callback_destination_busy(lab: Lab) -> None:
    """AMI Originate on behalf of 101 to +79817654321 (__CALLBACKID=cb-0004): 101 answers
    after 1 s; the destination (the carrier) answers 486 Busy after 1 s."""
    await lab.phone("101", ring_ms=1000)
    await lab.carrier("busy", ring_ms=1000)
    await lab.callback("101", "+79817654321", "cb-0004", "campaign-7", timeout_ms=15000)
    await asyncio.sleep(4.0)


@scenario
async def callback_destination_unreachable(lab: Lab) -> None:
    """AMI Originate on behalf of 101 to +79817654321 (__CALLBACKID=cb-0005): 101 answers
    after 1 s; the destination cannot be reached (the carrier answers 404 Not Found after
    1 s: no such number)."""
    await lab.phone("101", ring_ms=1000)
    await lab.carrier("notfound", ring_ms=1000)
    await lab.callback("101", "+79817654321", "cb-0005", "campaign-7", timeout_ms=15000)
    await asyncio.sleep(4.0)


@scenario
async def voicemail_busy(lab: Lab) -> None:
    """Voicemail for 102 (AstDB VM/102=1), which is busy: 101 calls 102, 102 answers 486
    after 1 s; VoiceMail(102@default,b) answers with the busy greeting, 101 speaks (audio,
    after the greeting) and hangs up after 12 s: one message is left in 102's INBOX."""
    await lab.db("VM", "102", "1")
    await lab.phone("102", "busy", ring_ms=1000)
    await lab.call("101", "Anna", "102", hold_ms=12000, audio=True, audio_after_ms=5000)


@scenario
async def voicemail_unregistered(lab: Lab) -> None:
    """Voicemail for 106 (AstDB VM/106=1), a phone with no contact: 101 calls 106, Dial
    fails at once (CHANUNAVAIL); VoiceMail(106@default,u) answers with the unavailable
    greeting, 101 speaks (audio, after the greeting) and hangs up after 12 s: one message
    is left in 106's INBOX."""
    await lab.db("VM", "106", "1")
    await lab.call("101", "Anna", "106", hold_ms=12000, audio=True, audio_after_ms=5000)


# ---- the FreePBX-style profile (extensions_freepbx.conf, fixtures/freepbx.yaml) ----------


@scenario
async def freepbx_internal(lab: Lab) -> None:
    """FreePBX-style: 201 calls 202 (from-internal, ext-local, macro-dial-one dialing the
    contact PJSIP/202/sip:202@...); 202 answers after 1 s; 201 hangs up after 3 s."""
    await lab.phone("202", ring_ms=1000)
    await lab.call("201", "Anna", "202", hold_ms=3000)


@scenario
async def freepbx_did_recorded(lab: Lab) -> None:
    """FreePBX-style: +74957654321 calls DID 74952230001 on fpbx-trunk (from-pstn,
    ext-did: FROM_DID, sub-record-check: CALLFILENAME and MixMonitor) routed to 201, which
    answers after 1 s; the caller hangs up after 3 s."""
    await lab.phone("201", ring_ms=1000, audio=True)
    await lab.inbound("+74957654321", "74952230001", ip=FREEPBX_CARRIER_IP, hold_ms=3000, audio=True)


@scenario
async def freepbx_ring_group(lab: Lab) -> None:
    """FreePBX-style: +74957654321 calls DID 74952230002, the ring group 610 (ext-group,
    both contacts dialed at once from the caller's channel): 203 answers after 2 s, 202 is
    cancelled; the caller hangs up after 3 s."""
    await lab.phone("202", "ring")
    await lab.phone("203", ring_ms=2000)
    await lab.inbound("+74957654321", "74952230002", ip=FREEPBX_CARRIER_IP, hold_ms=3000)


@scenario
async def freepbx_queue(lab: Lab) -> None:
    """FreePBX-style: 201 calls 310, the queue "fpbx" whose members are
    Local/202@from-queue/n and Local/203@from-queue/n (from-queue-exten-only,
    macro-dial-one); 202 answers after 2 s, 203 is cancelled; 201 hangs up after 3 s."""
    await lab.phone("202", ring_ms=2000)
    await lab.phone("203", "ring")
    await lab.call("201", "Anna", "310", hold_ms=3000)


@scenario
async def freepbx_followme(lab: Lab) -> None:
    """FreePBX-style follow-me of 204 to +79161234567 (AstDB FM/204): 201 calls 204;
    ext-findmefollow dials Local/FMPR-204 (the phone, through macro-dial-one) and
    Local/FMGL-+79161234567# (the number, through from-internal and the outbound route,
    EXTTOCALL=204) at once; the phone only rings, the mobile answers after 1 s; 201 hangs
    up after 3 s."""
    await lab.db("FM", "204", EXTERNAL)
    await lab.phone("204", "ring")
    await lab.carrier(ring_ms=1000, ip=FREEPBX_CARRIER_IP)
    await lab.call("201", "Anna", "204", hold_ms=3000)


@scenario
async def freepbx_cf_external(lab: Lab) -> None:
    """FreePBX-style call forwarding: 205 forwards to +79161234567 (AstDB CF/205).
    +74957654321 calls DID 74952230004 (205); macro-dial-one dials
    Local/+79161234567@from-internal/n (DIVERSION_REASON=unconditional, EXTTOCALL=205),
    the outbound route takes it to fpbx-trunk; the mobile answers after 1 s and hangs up
    after 3 s."""
    await lab.db("CF", "205", EXTERNAL)
    await lab.carrier(ring_ms=1000, hold_ms=3000, ip=FREEPBX_CARRIER_IP)
    await lab.inbound("+74957654321", "74952230004", ip=FREEPBX_CARRIER_IP, hold_ms=None)


# ---- the Local-wrapped profile ---------------------------------------------------------
# These scenarios again, with every phone dialed through two Local channel pairs (AstDB
# LAB/wrap=1): they must give the same events as the plain recordings.
WRAPPED = (
    "internal-answered-caller-hangup", "internal-busy", "internal-cancel", "inbound-did-recorded",
    "blind-transfer-ami", "attended-transfer", "pickup-directed", "voicemail", "park-retrieve",
    "call-waiting",
)  # fmt: skip


def _wrapped(plain: Scenario) -> Scenario:
    async def run(lab: Lab) -> None:
        await lab.db("LAB", "wrap", "1")
        await plain(lab)

    run.__doc__ = (f"{plain.__doc__}\n\nEvery phone is dialed through Local/<ext>@wrap-outer/n, then "
                   "Local/<ext>#@wrap-inner (AstDB LAB/wrap=1).")  # fmt: skip
    return run


for _name in WRAPPED:
    SCENARIOS[f"wrapped-{_name}"] = _wrapped(SCENARIOS[_name])


# ---- recording -----------------------------------------------------------------------


def summarize(data: bytes) -> str:
    """What the stream shows: channels with their hangup cause, dial outcomes, counts."""
    blocks, tail = split_stream(data)
    counts: collections.Counter[str] = collections.Counter()
    lines: list[str] = []
    first_ts = last_ts = None
    for block in blocks:
        msg = parse(block)
        ev = msg.event
        if ev is None:
            continue
        counts[ev] += 1
        ts = msg.get("Timestamp")
        if ts:
            first_ts = first_ts or float(ts)
            last_ts = float(ts)
        if ev == "Newchannel" and not msg.get("Channel", "").startswith("Message/"):
            lines.append(
                f"- new channel `{msg.get('Channel')}` ({msg.get('CallerIDNum')} -> {msg.get('Exten')})"
            )
        elif ev == "DialEnd":
            lines.append(
                f"- DialEnd `{msg.get('Channel', '(originate)')}` -> `{msg.get('DestChannel')}`: "
                f"{msg.get('DialStatus')}"
            )
        elif ev == "Hangup":
            lines.append(
                f"- hangup `{msg.get('Channel')}`: cause {msg.get('Cause')} ({msg.get('Cause-txt')})"
            )
        elif ev in (
            "BlindTransfer",
            "AttendedTransfer",
            "OriginateResponse",
            "UserEvent",
            "QueueCallerJoin",
            "QueueCallerAbandon",
            "AgentConnect",
            "AgentComplete",
            "MessageWaiting",
            "LocalOptimizationBegin",
            "LocalOptimizationEnd",
        ):
            detail = {
                "BlindTransfer": "Result",
                "AttendedTransfer": "DestType",
                "OriginateResponse": "Response",
                "UserEvent": "UserEvent",
                "MessageWaiting": "Mailbox",
            }.get(ev)
            lines.append(f"- {ev}" + (f" {msg.get(detail)}" if detail else ""))
    span = f"{last_ts - first_ts:.1f} s" if first_ts and last_ts else "?"
    top = ", ".join(f"{k} {v}" for k, v in counts.most_common(8))
    head = [f"{sum(counts.values())} events over {span}; most frequent: {top}."]
    if tail:
        head.append("The stream ends with a truncated block.")
    return "\n".join(head) + "\n\nKey events, in order:\n\n" + "\n".join(lines) + "\n"


async def fresh_switches(ami: Manager) -> None:
    """Clear the AstDB switches a scenario may have left (forwarding, follow-me, voicemail,
    the Local-wrapped profile): every scenario and live test starts from plain phones."""
    for family in ("CF", "FM", "VM", "LAB"):
        await ami.send_action({"Action": "DBDelTree", "Family": family})


async def record_one(name: str, out_dir: Path) -> Path:
    fn = SCENARIOS[name]
    ami = Manager(host=AMI[0], port=AMI[1], username="lab", secret="lab-secret", ping_delay=3600, events="on")
    ami.connect()
    for _ in range(100):
        if ami.authenticated:
            break
        await asyncio.sleep(0.05)
    else:
        raise ScenarioError("lab AMI user could not log in: is the lab up? (lab/lab.sh up)")
    await fresh_switches(ami)
    path = out_dir / f"{name}.ami"
    tmp = path.with_suffix(".ami.tmp")
    with open(tmp, "wb") as out:
        rec = Recorder(AMI[0], AMI[1], "bridge", "lab-secret", out)
        await rec.start()
        lab = Lab(rec, ami)
        try:
            await fn(lab)
            if not await rec.wait_idle(quiet=2.0, timeout=60):
                raise ScenarioError(f"channels still up after the scenario: {sorted(rec.channels)}")
        finally:
            await lab.close()
            rec.stop()
            ami.close()
    data = tmp.read_bytes()
    tmp.replace(path)
    doc = (fn.__doc__ or "").strip()
    doc = " ".join(line.strip() for line in doc.splitlines())
    md = (
        f"# {name}\n\nRecorded from the lab's Asterisk with `make lab-record NAME={name}`"
        f" (lab/driver.py).\n\n## What happened\n\n{doc}\n\n## What the stream shows\n\n{summarize(data)}"
    )
    path.with_suffix(".md").write_text(md)
    return path


async def amain(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    play = sub.add_parser("play", help="place a scenario's calls without keeping the recording")
    play.add_argument("names", nargs="+")
    rec = sub.add_parser("record")
    rec.add_argument("names", nargs="*")
    rec.add_argument("--all", action="store_true")
    rec.add_argument("--out", type=Path, default=REPO / "fixtures")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for name, fn in SCENARIOS.items():
            print(f"{name:36} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.cmd == "play":
        import tempfile

        args.all = False
        args.out = Path(tempfile.mkdtemp(prefix="ami-bridge-play-"))
    names = list(SCENARIOS) if args.all else args.names
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        print(f"unknown scenario(s): {unknown}; see `lab/driver.py list`", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        t0 = time.monotonic()
        try:
            path = await record_one(name, args.out)
            print(f"recorded {path} in {time.monotonic() - t0:.1f} s", flush=True)
        except Exception as err:  # one scenario's failure must not stop the others
            failed.append(name)
            print(f"FAILED {name}: {err}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(amain(sys.argv[1:])))
