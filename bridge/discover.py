"""``ami-bridge extensions``: ask Asterisk which phones and queues it has and write the
``extensions:`` block for them, ready to review and paste into the config.

What is asked (read-only AMI actions): ``PJSIPShowEndpoints`` (then ``PJSIPShowEndpoint``
for each new phone: its caller id name and mailbox), ``SIPpeers`` (then ``SIPshowpeer``;
an Asterisk without chan_sip is fine), ``QueueSummary`` and ``VoicemailUsersList``.
IVRs are dialplan, which AMI cannot tell from the rest: they stay as the config has them.

Which devices are trunks, not phones (skipped, and named in the output with the reason):
one listed in the config's ``trunks:``; a PJSIP endpoint with an ``outbound_auth`` (it
authenticates to a provider) or with a static contact that has no user part
(``sip:203.0.113.5:5060``, as a provider's; a phone's is ``sip:101@...``); a chan_sip
peer with a fixed host (``host=`` an address, not ``dynamic``). A device the config
already has as a phone is a phone whatever it looks like.

Ids (:func:`plan`): an object the config already has (same device, same queue) keeps its
entry as it is. A new one is named ``client*short@domain``, ``short`` being the
endpoint's, peer's or queue's name, and gets ``id = base + short`` when ``short`` is a
number and that id is free; otherwise (a name like ``sales``, or the id taken) the next
free id above every id in use, new objects taken in order (phones by device, then
queues by name). ``base`` is the most common ``id - short`` among the config's
extensions (1000 with none), unless given. The same PBX and config always give the same
block; once pasted, the config keeps those ids.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.ami.source import ActionError, AmiSource
from bridge.config import Config, Extension
from bridge.doctor import _LOOKUPS, login, open_source, unknown_command

#: the id base when the config has no extension to learn it from
DEFAULT_BASE = 1000


class DiscoverError(Exception):
    """Asterisk could not be asked (unreachable, login refused); the message says how to fix it."""


@dataclass(frozen=True)
class Found:
    """A phone or a queue Asterisk has."""

    type: Literal["phone", "queue"]
    #: a phone's device (``PJSIP/101``, ``SIP/150010001``) or a queue's name
    key: str
    #: its short number (the endpoint's, peer's or queue's name)
    short: str
    #: the endpoint as the config writes it (``101``, ``SIP/150010001``)
    endpoint: str | None = None
    label: str | None = None
    #: mailboxes the device names itself (``101@default``), best first
    mailboxes: tuple[str, ...] = ()


@dataclass
class Discovery:
    """What Asterisk answered."""

    found: list[Found] = field(default_factory=list)
    #: (device, why it is taken for a trunk)
    trunks: list[tuple[str, str]] = field(default_factory=list)
    #: voicemail boxes, ``box@context``
    voicemail: list[str] = field(default_factory=list)
    #: what could not be asked, and why (the output says it too)
    notes: list[str] = field(default_factory=list)


@dataclass
class Entry:
    """One line of the block: an extension, new or from the config."""

    ext: dict[str, Any]
    status: Literal["new", "existing", "clash"]
    comment: str = ""


@dataclass
class Plan:
    existing: list[Entry]
    new: list[Entry]
    discovery: Discovery
    base: int
    client: str
    domain: str


# ---- asking Asterisk ---------------------------------------------------------------


async def _list(source: AmiSource, fields: dict[str, str], timeout: float) -> list[dict[str, str]]:
    """The events of a list action (``EventList: start`` ... ``Complete``); a plain Success
    (Asterisk's answer when the list is empty) is no event."""
    try:
        resp = await asyncio.wait_for(source.manager.send_action(dict(fields)), timeout)
    except TimeoutError as err:
        raise ActionError(f"no answer to {fields['Action']} within {timeout:g} s") from err
    msgs = [
        {str(k): str(v) for k, v in dict(m).items()} for m in (resp if isinstance(resp, list) else [resp])
    ]
    if msgs and msgs[0].get("Response") == "Error":
        raise ActionError(msgs[0].get("Message", "refused"))
    return [m for m in msgs[1:] if m.get("Event") and not m["Event"].endswith("Complete")]


def callerid_name(callerid: str) -> str | None:
    """The name of ``"Anna" <101>`` (None for ``<unknown>`` or no name)."""
    m = re.match(r'\s*"?([^"<]*?)"?\s*(<[^>]*>)?\s*$', callerid or "")
    name = m.group(1).strip() if m else ""
    return name or None


def _boxes(text: str) -> tuple[str, ...]:
    """``101@default,102`` -> ("101@default", "102@default")."""
    out = []
    for box in (b.strip() for b in (text or "").split(",")):
        if box:
            out.append(box if "@" in box else f"{box}@default")
    return tuple(out)


def _pjsip_trunk(entry: dict[str, str]) -> str | None:
    """Why a PJSIP endpoint (an ``EndpointList`` event) looks like a trunk, or None."""
    if entry.get("OutboundAuths", "").strip():
        return f"has outbound_auth {entry['OutboundAuths'].strip()} (it authenticates to a provider)"
    for contact in entry.get("Contacts", "").split(","):
        uri = contact.strip().split("/", 1)[-1]
        if uri and "@" not in uri:
            return f"a static contact without a user part ({uri}), as a provider's"
    return None


async def _detail(source: AmiSource, tech: str, name: str, timeout: float) -> dict[str, str]:
    """The device's own description (the doctor's lookup action: PJSIPShowEndpoint, SIPshowpeer)."""
    action, arg, _, _ = _LOOKUPS[tech]
    if tech == "PJSIP":
        events = await _list(source, {"Action": action, arg: name}, timeout)
        return next((e for e in events if e.get("Event") == "EndpointDetail"), {})
    return await source.action({"Action": action, arg: name}, timeout)


async def ask(source: AmiSource, config: Config, timeout: float = 20.0) -> Discovery:
    """Ask a logged-in ``source`` for the PBX's phones, trunks, queues and mailboxes."""
    found = Discovery()
    phones = {e.device for e in config.extensions if e.device}
    listed = set(config.trunk_devices)

    async def listing(
        fields: dict[str, str], what: str, missing: str, empty: str = ""
    ) -> list[dict[str, str]]:
        try:
            return await _list(source, fields, timeout)
        except ActionError as err:
            if empty and empty in str(err):
                return []
            if unknown_command(err):
                found.notes.append(f"{missing}: no {what} ({fields['Action']}: {err})")
            else:
                found.notes.append(f"could not list {what} ({fields['Action']}: {err}). Fix: write = "
                                   "system,call for the bridge's user in manager.conf (as the README's "
                                   "Asterisk-side set-up has it), then 'manager reload'")  # fmt: skip
            return []

    devices: list[tuple[str, str, str | None]] = []  # (tech, name, why a trunk)
    for e in await listing(
        {"Action": "PJSIPShowEndpoints"}, "PJSIP endpoints", "chan_pjsip is not loaded", "No endpoints found"
    ):
        if e.get("Event") == "EndpointList" and e.get("ObjectName"):
            devices.append(("PJSIP", e["ObjectName"], _pjsip_trunk(e)))
    for e in await listing(
        {"Action": "SIPpeers"}, "chan_sip peers", "chan_sip is not loaded (Asterisk 21 and later have none)"
    ):
        if e.get("Event") == "PeerEntry" and e.get("ObjectName"):
            fixed = e.get("Dynamic", "yes").lower() == "no"
            devices.append(("SIP", e["ObjectName"], "a fixed host (not host=dynamic), as a provider's"
                            if fixed else None))  # fmt: skip
    for tech, name, why in sorted(devices, key=lambda d: (d[0], _order(d[1]))):
        dev = f"{tech}/{name}"
        if dev in listed:
            found.trunks.append((dev, "listed in trunks:"))
            continue
        if why and dev not in phones:
            found.trunks.append((dev, why))
            continue
        label: str | None = None
        boxes: tuple[str, ...] = ()
        if dev not in phones:  # the config's phones stay as they are: no need to ask
            try:
                detail = await _detail(source, tech, name, timeout)
            except ActionError as err:
                found.notes.append(f"could not read {dev} ({err}): no label or mailbox from it")
                detail = {}
            label = callerid_name(detail.get("Callerid", ""))
            boxes = _boxes(detail.get("Mailboxes", "") or detail.get("VoiceMailbox", ""))
        endpoint = name if tech == "PJSIP" else dev
        found.found.append(Found("phone", dev, name, endpoint, label, boxes))
    queues = await listing({"Action": "QueueSummary"}, "queues", "app_queue is not loaded")
    for q in sorted(
        {e["Queue"] for e in queues if e.get("Event") == "QueueSummary" and e.get("Queue")}, key=_order
    ):
        found.found.append(Found("queue", q, q))
    for e in await listing({"Action": "VoicemailUsersList"}, "mailboxes", "app_voicemail is not loaded"):
        if e.get("Event") == "VoicemailUserEntry" and e.get("VoiceMailbox"):
            found.voicemail.append(f"{e['VoiceMailbox']}@{e.get('VMContext') or 'default'}")
    return found


async def discover(config: Config, timeout: float = 8.0) -> Discovery:
    """Log in with the config's ``ami:`` and :func:`ask`; :class:`DiscoverError` when that fails."""
    source = open_source(config.ami, events="off")
    try:
        failure = await login(source, timeout)
        if failure is not None:
            raise DiscoverError(failure)
        return await ask(source, config)
    finally:
        source.close()


# ---- the block ---------------------------------------------------------------------


def _order(name: str) -> tuple[int, int, str]:
    """Numbers first, by value; then names."""
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _parts(ext: Extension) -> tuple[str, str] | None:
    """(client, domain) of a ``client*short@domain`` name."""
    extended, at, domain = ext.name.partition("@")
    client, star, _ = extended.rpartition("*")
    return (client, domain) if star and at and client and domain else None


def infer(config: Config) -> tuple[str | None, str | None, int]:
    """The client, domain and id base most of the config's extensions use (None, None,
    :data:`DEFAULT_BASE` when it has none)."""
    parts = Counter(p for p in map(_parts, config.extensions) if p)
    bases = Counter(e.id - int(e.short) for e in config.extensions if e.short.isdigit())
    client, domain = min(parts, key=lambda p: (-parts[p], p)) if parts else (None, None)
    base = min(bases, key=lambda b: (-bases[b], b)) if bases else DEFAULT_BASE
    return client, domain, base


def _mailbox(found: Found, boxes: list[str]) -> str | None:
    """The phone's mailbox: one the device names that Asterisk has (or any it names when
    the list could not be read), else a box numbered as its short number (``default``
    context first, then by context)."""
    for box in found.mailboxes:
        if box in boxes or not boxes:
            return box
    same = sorted((b for b in boxes if b.split("@", 1)[0] == found.short),
                  key=lambda b: (b.split("@", 1)[1] != "default", b))  # fmt: skip
    return same[0] if same else None


def plan(config: Config, discovery: Discovery, client: str, domain: str, base: int) -> Plan:
    """The config's extensions, and one new entry per object the config does not have."""
    known = {e.device or f"queue:{e.queue}" for e in config.extensions if e.type != "ivr"}
    seen = {(f.key if f.type == "phone" else f"queue:{f.key}") for f in discovery.found}
    existing = []
    for ext in config.extensions:
        key = ext.device or f"queue:{ext.queue}"
        if ext.type == "ivr":
            note = "IVR (dialplan: AMI cannot list IVRs, so keep yours)"
        elif key in seen:
            note = "in the config, found on the PBX"
            vm = (
                _mailbox(Found("phone", key, ext.short), discovery.voicemail) if ext.type == "phone" else None
            )
            if vm and not ext.mailbox:
                note += f'; it has voicemail {vm}: add mailbox: "{vm}" for voicemail events'
        else:
            note = "in the config, NOT found on the PBX: removed, or under another name?"
        existing.append(Entry(ext.model_dump(exclude_none=True), "existing", note))
    ids = {e.id for e in config.extensions}
    names = {e.name for e in config.extensions}
    new = [f for f in discovery.found if (f.key if f.type == "phone" else f"queue:{f.key}") not in known]
    chosen: dict[int, int] = {}
    for i, f in enumerate(new):
        if f.short.isdigit() and base + int(f.short) not in ids:
            chosen[i] = base + int(f.short)
            ids.add(chosen[i])
    entries = []
    for i, f in enumerate(new):
        if i not in chosen:
            chosen[i] = max(ids | {base}) + 1
            ids.add(chosen[i])
        item: dict[str, Any] = {"id": chosen[i], "name": f"{client}*{f.short}@{domain}", "type": f.type}
        if f.type == "phone":
            item["endpoint"] = f.endpoint
            vm = _mailbox(f, discovery.voicemail)
            if vm:
                item["mailbox"] = vm
            if f.label:
                item["label"] = f.label
        else:
            item["queue"] = f.key
        if f.short.isdigit() and chosen[i] == base + int(f.short):
            why = "id = base + short"
        elif f.short.isdigit():
            why = "next free id (base + short is taken)"
        else:
            why = f"next free id ({f.short!r} is no number: put the number callers dial in the name)"
        if item["name"] in names:
            entries.append(
                Entry(item, "clash", f"NOT added: {item['name']} is taken; give it another short number")
            )
            continue
        names.add(item["name"])
        entries.append(Entry(item, "new", f"new: {f.key if f.type == 'phone' else 'queue ' + f.key}; {why}"))
    return Plan(existing, entries, discovery, base, client, domain)


_KEYS = ("id", "name", "type", "endpoint", "mailbox", "queue", "context", "label")


def _flow(ext: dict[str, Any]) -> str:
    """``{id: 1101, name: "000*101@pbx.example", ...}`` (JSON strings are YAML scalars)."""
    return (
        "{"
        + ", ".join(
            f"{k}: {ext[k] if k == 'type' else json.dumps(ext[k], ensure_ascii=False)}"
            for k in _KEYS
            if k in ext
        )
        + "}"
    )


def render_yaml(p: Plan) -> str:
    d = p.discovery
    out = [
        "# ami-bridge extensions: what this Asterisk has, as an extensions: block to review",
        f"# and paste. New entries: name {p.client}*<short>@{p.domain}, id = {p.base} + short",
        "# when short is a number and that id is free, else the next free id.",
        "extensions:",
    ]
    if p.existing:
        out.append("  # ---- in your config: kept as they are")
        out += [f"  - {_flow(e.ext)}  # {e.comment}" for e in p.existing]
    out.append(f"  # ---- new: found on the PBX ({len([e for e in p.new if e.status == 'new'])})")
    for e in p.new:
        prefix = "  # - " if e.status == "clash" else "  - "
        out.append(f"{prefix}{_flow(e.ext)}  # {e.comment}")
    out.append("  # IVRs are dialplan contexts: AMI cannot list them; add each as")
    out.append('  # {id: ..., name: "...", type: ivr, context: <its context>}')
    for dev, why in d.trunks:
        out.append(f"# skipped {dev}: a trunk ({why})")
    unlisted = [dev for dev, why in d.trunks if why != "listed in trunks:"]
    if unlisted:
        names = ", ".join(dev.removeprefix("PJSIP/") for dev in unlisted)
        out.append(f"# the bridge should know these trunks: add them to trunks: [{names}]")
    out += [f"# note: {n}" for n in d.notes]
    return "\n".join(out) + "\n"


def render_json(p: Plan) -> str:
    return json.dumps({
        "extensions": [e.ext for e in p.existing] + [e.ext for e in p.new if e.status == "new"],
        "new": [e.ext["id"] for e in p.new if e.status == "new"],
        "not_added": [{"extension": e.ext, "reason": e.comment} for e in p.new if e.status == "clash"],
        "skipped": [{"device": dev, "reason": why} for dev, why in p.discovery.trunks],
        "notes": p.discovery.notes,
    }, ensure_ascii=False, indent=2)  # fmt: skip
