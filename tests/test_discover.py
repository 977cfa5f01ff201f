"""``ami-bridge extensions`` against a fake PBX on loopback: which phones, queues and
mailboxes become entries, which devices are skipped as trunks, the id rule, the config's
entries kept, and a block that loads as a config (and gives itself back when re-run)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from bridge.config import load_config, parse_config
from bridge.demo import action_id
from bridge.discover import Discovery, callerid_name, discover, infer, plan, render_yaml
from tests.conftest import REPO, free_port

Block = dict[str, str]
UNKNOWN = "Invalid/unknown command: {}. Use Action: ListCommands to show available commands."


def endpoint(name: str, contact: str = "", outbound_auths: str = "") -> Block:
    return {"Event": "EndpointList", "ObjectType": "endpoint", "ObjectName": name, "Transport": "udp",
            "Aor": name, "Auths": "", "OutboundAuths": outbound_auths,
            "Contacts": f"{name}/{contact}," if contact else "", "DeviceState": "Not in use"}  # fmt: skip


class FakePbx:
    """Answers Login (``secret`` right or refused) and the listing actions a PBX answers,
    from what it is given; ``chan_sip=False``: SIPpeers is an unknown command."""

    def __init__(self, endpoints: list[Block], peers: list[Block] | None = None,
                 details: dict[str, Block] | None = None, queues: list[str] = (),  # type: ignore[assignment]
                 voicemail: list[tuple[str, str]] = (), secret: str = "s") -> None:  # type: ignore[assignment]  # fmt: skip
        self.endpoints, self.peers, self.details = endpoints, peers, details or {}
        self.queues, self.voicemail, self.secret = list(queues), list(voicemail), secret
        self.actions: list[str] = []

    def answer(self, action: str, fields: Block) -> list[Block]:
        ok = {"Response": "Success", "EventList": "start", "Message": "will follow"}

        def listing(events: list[Block], done: str) -> list[Block]:
            return [ok, *events, {"Event": done, "EventList": "Complete", "ListItems": str(len(events))}]

        if action == "PJSIPShowEndpoints":
            if not self.endpoints:
                return [{"Response": "Error", "Message": "No endpoints found"}]
            return listing(self.endpoints, "EndpointListComplete")
        if action == "PJSIPShowEndpoint":
            detail = self.details.get(f"PJSIP/{fields['Endpoint']}")
            if detail is None:
                return [{"Response": "Error", "Message": "Unable to retrieve endpoint"}]
            return listing([{"Event": "EndpointDetail", "ObjectType": "endpoint", **detail},
                            {"Event": "AorDetail", "ObjectType": "aor", "Mailboxes": ""}], "EndpointDetailComplete")  # fmt: skip
        if action in ("SIPpeers", "SIPshowpeer") and self.peers is None:
            return [{"Response": "Error", "Message": UNKNOWN.format(action)}]
        if action == "SIPpeers":
            return listing(self.peers or [], "PeerlistComplete")
        if action == "SIPshowpeer":
            return [
                {"Response": "Success", "Channeltype": "SIP", **self.details.get(f"SIP/{fields['Peer']}", {})}
            ]
        if action == "QueueSummary":
            return listing(
                [{"Event": "QueueSummary", "Queue": q} for q in self.queues], "QueueSummaryComplete"
            )
        if action == "VoicemailUsersList":
            if not self.voicemail:
                return [{"Response": "Success", "Message": "There are no voicemail users currently defined."}]
            return listing([{"Event": "VoicemailUserEntry", "VMContext": c, "VoiceMailbox": b, "Fullname": "x"}
                            for b, c in self.voicemail], "VoicemailUserEntryComplete")  # fmt: skip
        return [{"Response": "Error", "Message": UNKNOWN.format(action)}]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                fields = dict(re.findall(r"(\w+): (.*)\r\n", raw.decode()))
                action = fields.get("Action", "")
                self.actions.append(action)
                if action == "Login":
                    good = fields.get("Secret") == self.secret
                    blocks = [{"Response": "Success", "Message": "Authentication accepted"} if good
                              else {"Response": "Error", "Message": "Authentication failed"}]  # fmt: skip
                else:
                    blocks = self.answer(action, fields)
                aid = action_id(raw).decode()
                for block in blocks:
                    writer.write("".join(f"{k}: {v}\r\n" for k, v in {**block, "ActionID": aid}.items()).encode()
                                 + b"\r\n")  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return


def office() -> FakePbx:
    """Phones 101-103 and a named one on PJSIP, a chan_sip phone, three trunks (a static
    contact without user, an outbound_auth, a chan_sip fixed host), two queues, mailboxes."""
    return FakePbx(
        endpoints=[endpoint("102", "sip:102@10.0.0.2:5060"), endpoint("101", "sip:101@10.0.0.1:5060"),
                   endpoint("103"), endpoint("reception", "sip:reception@10.0.0.9:5060"),
                   endpoint("carrier", "sip:203.0.113.5:5060"), endpoint("provider", outbound_auths="prov-auth")],
        peers=[{"Event": "PeerEntry", "Channeltype": "SIP", "ObjectName": "150010001", "Dynamic": "yes"},
               {"Event": "PeerEntry", "Channeltype": "SIP", "ObjectName": "voipgrid", "Dynamic": "no"}],
        details={"PJSIP/102": {"ObjectName": "102", "Callerid": '"Boris B." <102>', "Mailboxes": "102@sales"},
                 "PJSIP/103": {"ObjectName": "103", "Callerid": "<unknown>", "Mailboxes": ""},
                 "PJSIP/reception": {"ObjectName": "reception", "Callerid": "Front desk <100>"},
                 "SIP/150010001": {"ObjectName": "150010001", "Callerid": '"Ivan" <150010001>',
                                   "VoiceMailbox": ""}},
        queues=["support", "500"],
        voicemail=[("101", "default"), ("102", "default"), ("102", "sales"), ("103", "other"), ("103", "default"),
                   ("150010001", "default")],
    )  # fmt: skip


CONFIG = """\
ami: {{host: 127.0.0.1, port: {port}, username: bridge, secret: {secret}}}
extensions:
{extensions}
trunks: {trunks}
"""
EXISTING = """\
  - {id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101", label: "Anna"}
  - {id: 1400, name: "000*400@pbx.example", type: ivr, context: ivr-main}
  - {id: 1777, name: "000*777@pbx.example", type: phone, endpoint: "777"}"""


async def run_cli(pbx: FakePbx, tmp_path: Path, *args: str, extensions: str = EXISTING, trunks: str = "[]",
                  secret: str = "s", port: int | None = None) -> tuple[int, str, str, Path]:  # fmt: skip
    """``ami-bridge extensions`` in a subprocess against ``pbx``: (exit code, stdout, stderr, config)."""
    server = await asyncio.start_server(pbx.serve, "127.0.0.1", 0)
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(port=port or server.sockets[0].getsockname()[1], secret=secret,
                                  extensions=extensions or "  []", trunks=trunks))  # fmt: skip
    path.chmod(0o600)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "extensions", "--config", str(path), *args, cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        server.close()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), path


def pasted(path: Path, block: str) -> Path:
    """The config at ``path`` with its extensions: replaced by ``block`` (as an operator pastes it)."""
    text = path.read_text()
    head, _, rest = text.partition("extensions:\n")
    tail = rest[rest.index("trunks:") :]
    out = path.with_name("pasted.yaml")
    out.write_text(head + block + tail)
    return out


async def test_phones_queues_and_mailboxes_become_a_block_that_loads(tmp_path: Path) -> None:
    """PJSIP and chan_sip phones, queues and mailboxes: each a line with the documented
    id; trunks skipped with the reason; the config's entries kept; it loads as a config."""
    code, out, err, path = await run_cli(office(), tmp_path)
    assert code == 0, err
    config = load_config(pasted(path, out))
    got = {e.id: e.model_dump(exclude_none=True) for e in config.extensions}
    assert got == {
        # the config's, as they were (even 777, which the PBX lacks; the IVR)
        1101: {"id": 1101, "name": "000*101@pbx.example", "type": "phone", "endpoint": "101", "label": "Anna"},
        1400: {"id": 1400, "name": "000*400@pbx.example", "type": "ivr", "context": "ivr-main"},
        1777: {"id": 1777, "name": "000*777@pbx.example", "type": "phone", "endpoint": "777"},
        # base 1000 (as 1101 is 1000 + 101) + short; the box the endpoint names wins
        1102: {"id": 1102, "name": "000*102@pbx.example", "type": "phone", "endpoint": "102",
               "mailbox": "102@sales", "label": "Boris B."},
        # no name in "<unknown>"; the box numbered 103, the default context first
        1103: {"id": 1103, "name": "000*103@pbx.example", "type": "phone", "endpoint": "103",
               "mailbox": "103@default"},
        # chan_sip: SIP/<peer>
        150011001: {"id": 150011001, "name": "000*150010001@pbx.example", "type": "phone",
                    "endpoint": "SIP/150010001", "mailbox": "150010001@default", "label": "Ivan"},
        1500: {"id": 1500, "name": "000*500@pbx.example", "type": "queue", "queue": "500"},
        # names are no numbers: the next free ids above every id in use, phones first
        150011002: {"id": 150011002, "name": "000*reception@pbx.example", "type": "phone",
                    "endpoint": "reception", "label": "Front desk"},
        150011003: {"id": 150011003, "name": "000*support@pbx.example", "type": "queue", "queue": "support"},
    }  # fmt: skip
    assert (
        "# skipped PJSIP/carrier: a trunk (a static contact without a user part (sip:203.0.113.5:5060)" in out
    )
    assert "# skipped PJSIP/provider: a trunk (has outbound_auth prov-auth" in out
    assert "# skipped SIP/voipgrid: a trunk (a fixed host (not host=dynamic)" in out
    assert (
        "# the bridge should know these trunks: add them to trunks: [carrier, provider, SIP/voipgrid]" in out
    )
    assert "000*777@pbx.example" in next(line for line in out.splitlines() if "NOT found on the PBX" in line)
    assert "AMI cannot list IVRs" in out
    assert "mailbox" in next(
        line for line in out.splitlines() if "id: 1101" in line and "add mailbox" in line
    )


async def test_a_re_run_on_the_pasted_block_gives_it_back(tmp_path: Path) -> None:
    """Stable ids: run, paste, run again: the same extensions, none new."""
    code, out, _, path = await run_cli(office(), tmp_path)
    assert code == 0
    first = load_config(pasted(path, out))
    server = await asyncio.start_server(office().serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        config = parse_config(re.sub(r"port: \d+", f"port: {port}", pasted(path, out).read_text()))
        found = await discover(config)
    finally:
        server.close()
    client, domain, base = infer(config)
    second = plan(config, found, client or "", domain or "", base)
    assert [e.status for e in second.new] == []
    assert load_config(pasted(path, render_yaml(second))).extensions == first.extensions


async def test_configured_trunks_are_skipped_and_configured_phones_kept(tmp_path: Path) -> None:
    """A device in trunks: is skipped as listed; one the config has as a phone stays a phone
    although it looks like a trunk."""
    ext = EXISTING + '\n  - {id: 1900, name: "000*900@pbx.example", type: phone, endpoint: carrier}'
    code, out, err, path = await run_cli(
        office(), tmp_path, extensions=ext, trunks="[provider, SIP/voipgrid]"
    )
    assert code == 0, err
    assert "# skipped PJSIP/provider: a trunk (listed in trunks:)" in out
    assert "# skipped SIP/voipgrid: a trunk (listed in trunks:)" in out
    assert "add them to trunks: [" not in out and "skipped PJSIP/carrier" not in out
    assert next(e for e in load_config(pasted(path, out)).extensions if e.id == 1900).endpoint == "carrier"


async def test_taken_ids_and_names_never_collide(tmp_path: Path) -> None:
    """base + short taken by another extension: the next free id; a name taken: the entry
    is written commented out with the reason, and the block still loads."""
    ext = EXISTING + '\n  - {id: 1102, name: "000*600@pbx.example", type: ivr, context: x}' + \
        '\n  - {id: 1601, name: "000*500@pbx.example", type: ivr, context: y}'  # fmt: skip
    code, out, err, path = await run_cli(office(), tmp_path, "--id-base", "1000", extensions=ext)
    assert code == 0, err
    config = load_config(pasted(path, out))
    assert {e.endpoint: e.id for e in config.extensions if e.type == "phone"}["102"] == 150011002
    assert not any(e.queue == "500" for e in config.extensions)
    assert '  # - {id: 1500, name: "000*500@pbx.example", type: queue, queue: "500"}  # NOT added' in out
    ids = [e.id for e in config.extensions]
    assert len(ids) == len(set(ids))


async def test_options_set_client_domain_base_and_json(tmp_path: Path) -> None:
    """--client, --domain, --id-base name and number new entries; --format json lists them."""
    pbx = FakePbx(endpoints=[endpoint("21", "sip:21@10.0.0.1")], queues=["7"], voicemail=[],
                  details={"PJSIP/21": {"ObjectName": "21", "Callerid": ""}})  # fmt: skip
    code, out, err, _ = await run_cli(pbx, tmp_path, "--client", "42", "--domain", "acme.example",
                                      "--id-base", "5000", "--format", "json", extensions="")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["extensions"] == [
        {"id": 5021, "name": "42*21@acme.example", "type": "phone", "endpoint": "21"},
        {"id": 5007, "name": "42*7@acme.example", "type": "queue", "queue": "7"},
    ]
    assert data["new"] == [5021, 5007] and data["skipped"] == []
    assert data["notes"] == [f"chan_sip is not loaded (Asterisk 21 and later have none): no chan_sip peers "
                             f"(SIPpeers: {UNKNOWN.format('SIPpeers')})"]  # fmt: skip
    assert "chan_sip is not loaded" in err


async def test_an_asterisk_without_chan_sip_or_endpoints_is_no_error(tmp_path: Path) -> None:
    """No chan_sip, no PJSIP endpoint, no mailbox: a block (of the config's) and a note; exit 0."""
    code, out, err, path = await run_cli(FakePbx(endpoints=[], queues=["800"]), tmp_path)
    assert code == 0, err
    assert "# note: chan_sip is not loaded" in out
    config = load_config(pasted(path, out))
    assert [e.id for e in config.extensions] == [1101, 1400, 1777, 1800]


async def test_an_action_refused_is_a_note_with_the_fix(tmp_path: Path) -> None:
    """A user without the permission for an action: the rest is listed, and a note (in the
    block and on stderr) says which action failed and what to grant."""
    pbx = office()
    answer = pbx.answer
    pbx.answer = lambda action, fields: (  # type: ignore[method-assign]
        [{"Response": "Error", "Message": "Permission denied"}]
        if action == "QueueSummary"
        else answer(action, fields)
    )
    code, out, err, path = await run_cli(pbx, tmp_path)
    assert code == 0, err
    note = "could not list queues (QueueSummary: Permission denied). Fix: write = system,call for the bridge's user"
    assert f"# note: {note}" in out and note in err
    config = load_config(pasted(path, out))
    assert not any(e.type == "queue" for e in config.extensions) and len(config.extensions) == 7


async def test_without_client_and_domain_it_says_what_to_pass(tmp_path: Path) -> None:
    code, out, err, _ = await run_cli(office(), tmp_path, extensions="")
    assert code == 2 and out == ""
    assert "pass --client (e.g. 000) and --domain" in err


async def test_refused_login_and_unreachable_ami_fail_with_the_fix(tmp_path: Path) -> None:
    code, out, err, _ = await run_cli(office(), tmp_path, secret="wrong")
    assert code == 1 and out == ""
    assert "login as 'bridge' refused (Authentication failed)" in err and "manager.conf" in err
    code, out, err, _ = await run_cli(office(), tmp_path, port=free_port())
    assert code == 1 and out == ""
    assert "did not answer in 8 s" in err and "enabled = yes" in err


@pytest.mark.parametrize(
    ("callerid", "name"),
    [('"Anna" <101>', "Anna"), ("Front desk <100>", "Front desk"), ("<unknown>", None), ("", None),
     ('"Boris B." <102>', "Boris B.")],
)  # fmt: skip
def test_the_label_is_the_caller_id_name(callerid: str, name: str | None) -> None:
    assert callerid_name(callerid) == name


def test_the_block_is_yaml_with_every_value_quoted_as_needed() -> None:
    """Names with YAML's special characters survive the round trip."""
    config = parse_config('ami: {username: u, secret: s}\nextensions: [{id: 1, name: "a*1@b", type: phone, '
                          'endpoint: "1", label: "x: #y, {z}"}]')  # fmt: skip
    out = render_yaml(plan(config, Discovery(), "a", "b", 0))
    assert yaml.safe_load(out)["extensions"][0]["label"] == "x: #y, {z}"
