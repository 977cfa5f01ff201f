"""Sans-I/O call translator: AMI messages in, Telphin extension events out.

Theory of operation
-------------------
The translator keeps three kinds of state, all dropped when a call ends:

* **channels** by Uniqueid: name, endpoint, caller id, the number first dialed, the
  channel variables seen (inherited ones included), who dialed it (DialBegin), its
  dial outcome, bridge time, and the components that live on it;
* **calls**: one per first channel (keyed by that channel's Linkedid at creation, so
  a later Linkedid change does not split a call), holding the CallID, a counter for
  SubCallIDs and the first non-empty value of each configured variable;
* **components**: one visit of the call to one configured extension, with its
  SubCallID, flow (``in``/``out``), identity fields, answer time and outcome.

A component emits ``dial-in``/``dial-out`` when it starts, ``answer`` when answered and
exactly one ``hangup`` when its channel hangs up. Where components start:

* a configured phone's channel is the Dest of a DialBegin -> IN component (dial-in);
* a configured phone's channel (or, through Local channel pairs, the channel behind
  the dialing one) places a Dial -> OUT component (dial-out), at its first DialBegin,
  or at ``VarSet DIALSTATUS`` when Dial never got as far as a DialBegin (CHANUNAVAIL);
* a trunk channel dialed for a call carrying the forwarding variable -> OUT component
  of the forwarding extension with ``Transfered=yes``.

Who the parties are, and how their numbers are written (extended numbers ``000*101``
for the PBX's own extensions, external numbers as received), is :mod:`.parties`' job:
an incoming component's ``CalledNumber`` and an outgoing one's ``CallerIDNum`` are
always the component's own extension, which is how Telphin's consumers attribute
events.

Time comes only from the ``Timestamp`` header (or the ``now`` passed in, for events
Asterisk sends without one). Nothing here does I/O; :meth:`Translator.feed` returns
the events to emit, in order.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bridge.ami.message import Message
from bridge.translate.parties import IN, OUT, Directory, Party

if TYPE_CHECKING:  # types only: the translator imports nothing that does I/O
    from bridge.config import Config, Extension

#: (extension id, event fields in the spec's order)
Emitted = tuple[int, dict[str, Any]]

FIELD_ORDER = (
    "EventType", "CallID", "SubCallID", "CallFlow", "CallStatus", "CallerIDNum", "CallerIDName",
    "CalledNumber", "CalledDID", "CallerExtension", "CallerExtensionID", "CalledExtension",
    "CalledExtensionID", "EventTime", "Duration", "BridgedDuration", "RecID", "CallAPIID",
    "Diversion", "ClientApiID", "Tag", "CallBackID", "Transfered", "Bridged", "RemoteNumber", "ANI",
)  # fmt: skip

IGNORED_DIALSTATUS = {"", "CONTINUE", "GOTO", "ABORT"}
UNKNOWN_CID = {"", "<unknown>", "<Unknown>"}
SPECIAL_EXTENS = {"s", "h", "t", "i", "T", "e", "o", "a"}
_SIP_NUMBER = re.compile(r"(?:sips?|tel):\+?([^@;>]+)")


def ordered(fields: dict[str, Any], extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The event's fields in the spec's order, optional ones without a value left out."""
    return {k: v for k in (*FIELD_ORDER, *extra_keys) if (v := fields.get(k)) is not None and v != ""}


def timestamp_us(value: str | None) -> int | None:
    """``"1764186329.123456"`` -> 1764186329123456, exactly (no float rounding); None
    for anything but ASCII digits with an optional fraction."""
    if not value:
        return None
    if value[-7:-6] == "." and len(value) > 7:  # what Asterisk writes: %ld.%06ld
        digits = value[:-7] + value[-6:]
        if digits.isascii() and digits.isdigit():
            return int(digits)
    sec, _, frac = value.strip().partition(".")
    if not (sec + frac).isascii() or not sec.isdigit() or (frac and not frac.isdigit()):
        return None
    return int(sec) * 1_000_000 + int((frac + "000000")[:6] or 0)


def diversion_number(header: str) -> str:
    """The number of a Diversion header: ``<sip:+7495...@x>;reason=...`` -> ``+7495...``."""
    m = _SIP_NUMBER.search(header)
    if not m:
        return header.split(";", 1)[0].strip().strip("<>")
    prefix = "+" if header[m.start(1) - 1] == "+" else ""
    return prefix + m.group(1)


_VARS, _DEST_VARS = "ChanVariable", "DestChanVariable"


def _unkeyed(span: str, key: str) -> str:
    """Raw ``Key: NAME=value`` lines with the key taken out (what two keys' lines share)."""
    return span.replace("\n" + key + ":", "\n:")


def endpoint_of(channel: str) -> tuple[str, str | None]:
    """(technology, endpoint) of a channel name: PJSIP/101-0000002a -> ("PJSIP", "101")."""
    tech, _, rest = channel.partition("/")
    if tech == "PJSIP":
        return tech, rest.rsplit("-", 1)[0]
    return tech, None


@dataclass(slots=True)
class Call:
    call_id: str
    linkedid: str
    components: int = 0
    vars: dict[str, str] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)

    def next_sub_id(self) -> str:
        self.components += 1
        return f"{self.call_id}-{self.components}"


@dataclass(slots=True)
class Component:
    ext: Extension
    sub_id: str
    flow: str
    base: dict[str, Any]
    answered_at: int | None = None
    outcome: str | None = None
    ended: bool = False
    #: "call" (a phone's leg), "callback" (its owner's leg), "queue-in", "queue-out" or "ivr"
    kind: str = "call"
    started_at: int = 0
    #: queue/IVR in-thread: when a person answered after it (Bridged=yes)
    bridged_at: int | None = None


@dataclass(slots=True)
class Channel:
    uid: str
    name: str
    call: Call
    tech: str
    endpoint: str | None
    cid_num: str = ""
    cid_name: str = ""
    #: caller name when the channel appeared: a phone's own display name, before the
    #: dialplan changes the caller id for the trunk (what the trunk shows is the ANI)
    own_cid_name: str = ""
    dialed: str | None = None
    vars: dict[str, str] = field(default_factory=dict)
    dialed_by: str | None = None
    dial_string: str = ""
    dial_outcome: str | None = None
    dial_status_var: str | None = None
    bridged_since: int | None = None
    bridged_total: int = 0
    comps: list[Component] = field(default_factory=list)
    out_comp: Component | None = None
    last_dial_outcome: str | None = None
    up_at: int | None = None
    abandoned: bool = False
    vm_started_at: int | None = None
    vm_file: str | None = None
    #: the raw ChanVariable lines last absorbed (the same lines need no second look), and
    #: the DestChanVariable ones (events with two channels show this one's as Dest...)
    vars_span: str = ""
    dest_vars_span: str = ""
    #: set on a transferee by a blind transfer: the transferer, on whose behalf the
    #: transfer target is then called
    transferred_by: Party | None = None

    @property
    def is_local(self) -> bool:
        return self.tech == "Local"


class Translator:
    """Feed AMI messages in stream order; get the extension events they cause."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._dir = Directory(config)
        self._phones = self._dir.phones
        self._by_number = self._dir.by_number
        self._queues = {e.queue: e for e in config.extensions if e.type == "queue" and e.queue}
        self._ivrs = {e.context: e for e in config.extensions if e.type == "ivr" and e.context}
        self._mailboxes = {e.mailbox: e for e in config.extensions if e.type == "phone" and e.mailbox}
        self._trunks = self._dir.trunks
        v = config.variables
        self._var_names = {
            v.tag: "Tag",
            v.callback_id: "CallBackID",
            v.diversion: "Diversion",
            v.client_api_id: "ClientApiID",
            v.recording_id: "RecID",
            v.forwarded_from: "forwarded_from",
            v.did: "CalledDID",
        }
        #: the variable behind each field (the first one, should two names share a field)
        self._var_of: dict[str, str] = {}
        for name, field_name in self._var_names.items():
            self._var_of.setdefault(field_name, name)
        self.channels: dict[str, Channel] = {}
        self.calls: dict[str, Call] = {}
        #: Uniqueid of each live Local channel by name, to find a pair's other half
        self._local_uids: dict[str, str] = {}
        self._last_ts = 0
        self.problems: list[str] = []

    # ---- public ---------------------------------------------------------------------

    def feed(self, msg: Message, now_us: int | None = None) -> list[Emitted]:
        """Process one AMI message; ``now_us`` is used only when it has no Timestamp."""
        event = msg.event
        if event is None:
            return []
        handler = self._handlers.get(event)
        if handler is None:
            return []
        ts = timestamp_us(msg.get("Timestamp"))
        if ts is None:
            ts = now_us if now_us is not None else self._last_ts
        if ts > self._last_ts:
            self._last_ts = ts
        out: list[Emitted] = []
        handler(self, msg, ts, out)
        return out

    def resync(self, live_uniqueids: set[str], now_us: int) -> list[Emitted]:
        """After an AMI outage: end what ended while we were away.

        ``live_uniqueids`` is what CoreShowChannels lists now. Every tracked channel not
        in it hung up during the outage: its components get their hangup (at ``now_us``:
        the real time is unknown, and so is the outcome beyond what was seen). Channels
        still up stay tracked, so no dial-in is ever sent twice.
        """
        out: list[Emitted] = []
        gone = [uid for uid in self.channels if uid not in live_uniqueids]
        # callees before callers, as Asterisk hangs them up
        gone.sort(key=lambda uid: self.channels[uid].dialed_by is None)
        for uid in gone:
            chan = self.channels.get(uid)
            if chan is None:
                continue
            synthetic = Message(
                [("Event", "Hangup"), ("Uniqueid", uid)], {"Event": "Hangup", "Uniqueid": uid}
            )
            self._on_hangup(synthetic, max(now_us, self._last_ts), out)
        self.problems.append(f"resync: {len(gone)} channel(s) ended during the AMI outage")
        return out

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    # ---- helpers --------------------------------------------------------------------

    def _chan(self, msg: Message, prefix: str = "") -> Channel | None:
        uid = msg.get(prefix + "Uniqueid")
        if not uid:
            return None
        chan = self.channels.get(uid)
        if chan is not None:
            self._absorb_from(chan, msg, prefix)
        return chan

    def _absorb_from(self, chan: Channel, msg: Message, prefix: str = "") -> None:
        # Every event repeats the channel's variables, and they rarely change. Events with
        # two channels show this one's as DestChanVariable: the lines last seen under each
        # key are kept, and lines that differ from the other key's only in the key are the
        # values absorbed last (kept lines are never older than that), not read again.
        if prefix:
            key, other_key, seen, other = _DEST_VARS, _VARS, chan.dest_vars_span, chan.vars_span
        else:
            key, other_key, seen, other = _VARS, _DEST_VARS, chan.vars_span, chan.dest_vars_span
        if msg.unchanged(key, seen):
            return
        span = msg.span(key)
        same = bool(other) and _unkeyed(span, key) == _unkeyed(other, other_key)
        if not same:
            other = ""  # new values: the other key's lines are read again when next seen
        if prefix:
            chan.dest_vars_span, chan.vars_span = span, other
        else:
            chan.vars_span, chan.dest_vars_span = span, other
        if same:
            return
        lines = span.count("\n") - 1
        if span.count("=\r\n") == lines and span.count("=") == lines:
            return  # every one "NAME=" (CRLF): nothing set yet, nothing to read
        self._absorb_vars(chan, msg.get_all(key, span))

    def _absorb_vars(self, chan: Channel, pairs: list[str]) -> None:
        for pair in pairs:
            name, _, value = pair.partition("=")
            if value:
                chan.vars[name] = value
                chan.call.vars.setdefault(name, value)

    def _set_var(self, chan: Channel, name: str, value: str) -> None:
        name = name.lstrip("_")
        if value:
            chan.vars[name] = value
            chan.call.vars.setdefault(name, value)

    def _var(self, chan: Channel, field_name: str) -> str | None:
        name = self._var_of.get(field_name)
        if name is None:
            return None
        return chan.vars.get(name) or chan.call.vars.get(name) or None

    def _partner(self, chan: Channel) -> Channel | None:
        """The other half of a Local channel pair."""
        if not chan.is_local or len(chan.name) < 2:
            return None
        other = chan.name[:-1] + ("1" if chan.name.endswith("2") else "2")
        uid = self._local_uids.get(other)
        return self.channels.get(uid) if uid else None

    def _origin(self, chan: Channel | None) -> Channel | None:
        """The real channel behind a dialing one, following Local pairs back to their dialer."""
        seen = 0
        while chan is not None and chan.is_local and seen < 16:
            seen += 1
            partner = self._partner(chan)
            if partner is None or partner.dialed_by is None:
                return chan
            chan = self.channels.get(partner.dialed_by)
        return chan

    def _emit(self, out: list[Emitted], comp: Component, event_type: str, ts: int, **extra: Any) -> None:
        fields = dict(comp.base)
        fields["EventType"] = event_type
        fields["EventTime"] = ts
        fields.update({k: v for k, v in extra.items() if v is not None and v != ""})
        out.append((comp.ext.id, ordered(fields)))

    def _identity(self, chan: Channel) -> dict[str, Any]:
        fields: dict[str, Any] = {"CallID": chan.call.call_id}
        did = self._var(chan, "CalledDID")
        if did:
            fields["CalledDID"] = did
        div = self._var(chan, "Diversion")
        if div:
            fields["Diversion"] = diversion_number(div)
        for name in ("ClientApiID", "Tag", "CallBackID"):
            value = self._var(chan, name)
            if value:
                fields[name] = value[:100] if name == "ClientApiID" else value
        return fields

    def _sub_id(self, chan: Channel) -> str:
        """The next SubCallID of the call on ``chan``. Before the first one the CallID is
        settled: a call started as a callback takes its callback id as CallID (what the
        callback API answered, and what Telphin sends: CallBackID = CallID)."""
        call = chan.call
        if call.components == 0:
            call.call_id = self._var(chan, "CallBackID") or call.call_id
        return call.next_sub_id()

    def _start(
        self,
        out: list[Emitted],
        chan: Channel,
        ext: Extension,
        flow: str,
        ts: int,
        fields: dict[str, Any],
        kind: str = "call",
        event: str | None = None,
    ) -> Component:
        sub_id = self._sub_id(chan)
        base = self._identity(chan)
        base.update({k: v for k, v in fields.items() if v not in (None, "")})
        base["SubCallID"] = sub_id
        base["CallFlow"] = flow
        base["CallAPIID"] = chan.uid
        comp = Component(ext, base["SubCallID"], flow, base, kind=kind, started_at=ts)
        chan.comps.append(comp)
        first = event or ("dial-in" if flow == IN else "dial-out")
        self._emit(out, comp, first, ts, CallStatus="CALLING")
        return comp

    def _ext_fields(self, prefix: str, ext: Extension | None) -> dict[str, Any]:
        if ext is None:
            return {}
        return {prefix + "Extension": ext.name, prefix + "ExtensionID": ext.id}

    def _number_ext(self, number: str | None) -> Extension | None:
        return self._by_number.get(number) if number else None

    def _party(self, chan: Channel, shown: Channel | None = None) -> Party:
        """Who is on ``chan``: a phone by its extended number and display name; an outside
        party by its number as received (a trunk leg the PBX dialed: the number dialed);
        anything else (a Local channel...) by its caller id, which names a phone if it is
        one's number. ``shown``: the channel whose caller id the dialplan last set (the
        one dialing, when ``chan`` is the real caller behind Local channels)."""
        ext = self._phones.get(chan.endpoint or "")
        if ext is not None:
            return self._dir.phone(ext, chan.own_cid_name or chan.cid_name)
        src = shown or chan
        num, name = src.cid_num or chan.cid_num, src.cid_name or chan.cid_name
        if chan.endpoint in self._trunks:
            if chan.dialed_by is not None:
                num = chan.dial_string.split("@", 1)[0] or chan.dialed or num
            return Party(num, name, None)
        return self._dir.internal(num, name)

    @staticmethod
    def _via(chan: Channel) -> Extension | None:
        """The IVR or queue the call on ``chan`` is in now (the latest one still open)."""
        for comp in reversed(chan.comps):
            if comp.kind in ("ivr", "queue-in") and not comp.ended:
                return comp.ext
        return None

    def _start_caller(self, out: list[Emitted], chan: Channel, ts: int, ani: str | None,
                      called: Extension | None = None) -> None:  # fmt: skip
        """OUT component for a phone placing a call (once per channel)."""
        ext = self._phones.get(chan.endpoint or "")
        if ext is None or chan.out_comp is not None or chan.dialed_by is not None:
            return
        fields: dict[str, Any] = {
            **self._party(chan).caller_fields(),
            "CalledNumber": self._dir.dialed(chan.dialed),
            **self._ext_fields("Called", called or self._number_ext(chan.dialed)),
            "ANI": ani,
        }
        chan.out_comp = self._start(out, chan, ext, OUT, ts, fields)

    # ---- handlers -------------------------------------------------------------------

    def _on_newchannel(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        uid = msg.get("Uniqueid")
        name = msg.get("Channel", "")
        if not uid or uid in self.channels or name.startswith("Message/"):
            return
        linkedid = msg.get("Linkedid") or uid
        call = self.calls.get(linkedid)
        if call is None:
            call = Call(call_id=linkedid, linkedid=linkedid)
            self.calls[linkedid] = call
        tech, endpoint = endpoint_of(name)
        exten = msg.get("Exten", "")
        chan = Channel(uid=uid, name=name, call=call, tech=tech, endpoint=endpoint,
                       dialed=exten if exten and exten not in SPECIAL_EXTENS else None)  # fmt: skip
        self._set_cid(chan, msg, "")
        chan.own_cid_name = chan.cid_name
        call.live.add(uid)
        self.channels[uid] = chan
        if chan.is_local:
            self._local_uids[name] = uid
        self._absorb_from(chan, msg)

    def _set_cid(self, chan: Channel, msg: Message, prefix: str) -> None:
        num = msg.get(prefix + "CallerIDNum", "")
        name = msg.get(prefix + "CallerIDName", "")
        if num not in UNKNOWN_CID:
            chan.cid_num = num
        if name not in UNKNOWN_CID:
            chan.cid_name = name

    def _on_newcallerid(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is not None:
            self._set_cid(chan, msg, "")

    def _on_newexten(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            return
        if chan.dialed is None and chan.dialed_by is None:
            exten = msg.get("Exten", "")
            if exten and exten not in SPECIAL_EXTENS:
                chan.dialed = exten
        ivr = self._ivrs.get(msg.get("Context", "")) if self._ivrs else None
        if ivr is not None and not any(c.kind == "ivr" and not c.ended for c in chan.comps):
            self._start_caller(out, chan, ts, None, ivr)
            self._start(out, chan, ivr, IN, ts, self._inbound_fields(chan, ivr), kind="ivr")
        app = msg.get("Application", "")
        if app == "VoiceMail":
            chan.vm_started_at = ts

    def _inbound_fields(self, chan: Channel, ext: Extension) -> dict[str, Any]:
        """Who called whom, for a queue or IVR reached by ``chan`` (an IVR or queue it is
        already in stands as the caller's extension)."""
        return {
            **self._party(chan).caller_fields(self._via(chan)),
            "CalledNumber": ext.extended,
            **self._ext_fields("Called", ext),
        }

    def _on_newstate(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None or msg.get("ChannelState") != "6" or chan.up_at is not None:
            return
        chan.up_at = ts
        # a phone that called an IVR is answered by it
        if chan.out_comp is not None and any(c.kind == "ivr" for c in chan.comps):
            self._answer(out, chan.out_comp, ts)

    def _on_queuecallerjoin(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        queue = self._queues.get(msg.get("Queue", ""))
        if chan is None or queue is None:
            return
        self._start_caller(out, chan, ts, None, queue)
        self._start(out, chan, queue, IN, ts, self._inbound_fields(chan, queue), kind="queue-in")

    def _on_queuecallerabandon(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is not None:
            chan.abandoned = True

    def _on_agentcalled(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        caller = self._chan(msg)
        agent = self._chan(msg, "Dest")
        queue = self._queues.get(msg.get("Queue", ""))
        if caller is None or agent is None or queue is None:
            return
        member = msg.get("Interface", "")
        number = member.split("/", 1)[-1].split("@", 1)[0]
        agent_ext = self._phones.get(number)
        # the out thread: the queue calls its agent, on behalf of the caller it connects to
        fields = {
            **self._dir.phone(queue).caller_fields(),
            "CalledNumber": agent_ext.extended if agent_ext is not None else number,
            **self._ext_fields("Called", agent_ext),
            "RemoteNumber": self._party(caller).num,
        }
        self._start(out, agent, queue, OUT, ts, fields, kind="queue-out", event="dial-in")

    def _on_agentconnect(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        caller = self._chan(msg)
        if caller is None:
            return
        for comp in caller.comps:
            if comp.kind in ("queue-in", "ivr") and comp.bridged_at is None and not comp.ended:
                comp.bridged_at = ts

    def _on_userevent(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        if msg.get("UserEvent") != "ExtensionMessage":
            return
        src, dst = msg.get("From", ""), msg.get("To", "")
        try:
            text = base64.b64decode(msg.get("Body", ""), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = msg.get("Body", "")
        msg_id = msg.get("Uniqueid") or f"msg-{ts}"
        src_ext, dst_ext = self._phones.get(src), self._phones.get(dst)
        base = {
            "CallID": msg_id,
            "SubCallID": msg_id,
            "CallerIDNum": src_ext.extended if src_ext is not None else src,
            "CalledNumber": dst_ext.extended if dst_ext is not None else dst,
            **self._ext_fields("Caller", src_ext),
            **self._ext_fields("Called", dst_ext),
            "EventTime": ts,
            "Message": text,
        }
        for ext, kind, flow in ((src_ext, "message-out", OUT), (dst_ext, "message-in", IN)):
            if ext is not None:
                fields = {"EventType": kind, **base, "CallFlow": flow}
                out.append((ext.id, ordered(fields, ("Message",))))

    def _on_originateresponse(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        if msg.get("Response") != "Failure":
            return
        uid = msg.get("Uniqueid", "")
        reasons = {"3": "NOANSWER", "5": "BUSY", "8": "CONGESTION"}
        status = reasons.get(msg.get("Reason", ""), "CHANUNAVAIL")
        chan = self.channels.get(uid)
        if chan is not None:
            if chan.out_comp is not None:
                chan.dial_status_var = status
            return
        # No channel was ever created (the owner cannot be reached at all). A callback the
        # bridge started has ChannelId "cb-<callback id>": its owner gets dial-out + hangup.
        ext = self._phones.get(endpoint_of(msg.get("Channel", ""))[1] or "")
        if ext is None or not uid.startswith("cb-") or uid in self.calls:
            return
        target = msg.get("Exten") or None
        callback_id = uid[3:]
        fields: dict[str, Any] = {
            # a callback's CallID is its callback id (what the callback API answered)
            "CallID": callback_id,
            "SubCallID": f"{callback_id}-1",
            "CallFlow": OUT,
            **self._dir.phone(ext).caller_fields(),
            "CalledNumber": self._dir.dialed(target),
            **self._ext_fields("Called", self._number_ext(target)),
            "CallAPIID": uid,
            "CallBackID": callback_id,
        }
        comp = Component(ext, fields["SubCallID"], OUT, fields, kind="callback", started_at=ts, ended=True)
        self._emit(out, comp, "dial-out", ts, CallStatus="CALLING")
        self._emit(out, comp, "hangup", ts, CallStatus=status, Duration=0)

    def _on_varset(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            return
        name = msg.get("Variable", "")
        value = msg.get("Value", "")
        if name == "DIALSTATUS":
            if value not in IGNORED_DIALSTATUS:
                chan.dial_status_var = value
                # Dial ended without ever reaching a DialBegin (e.g. CHANUNAVAIL)
                self._start_caller(out, chan, ts, None)
        elif name == "VM_MESSAGEFILE" and value:
            chan.vm_file = value
        elif name == "VMSTATUS" and value == "SUCCESS" and chan.vm_file:
            self._voicemail(out, chan, ts)
        elif name == "MIXMONITOR_FILENAME" and value:
            base = value.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            chan.call.vars.setdefault("MIXMONITOR_FILENAME", base)
        else:
            self._set_var(chan, name, value)

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
        fields = {
            **self._identity(chan),
            "EventType": "voicemail",
            "SubCallID": sub_id,
            "CallFlow": IN,
            **self._party(chan).caller_fields(self._via(chan)),
            "CalledNumber": ext.extended,
            **self._ext_fields("Called", ext),
            "EventTime": ts,
            # the message's length as AMI shows it (VoiceMail start to message saved);
            # the daemon replaces RecID/Duration from the spool's msg_id/duration if it can
            "Duration": ts - start,
            "RecID": f"{context}/{box}/{folder}/{name}",
        }
        out.append((ext.id, ordered(fields)))
        chan.vm_file = None

    def _on_dialbegin(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        dest = self._chan(msg, "Dest")
        if dest is None:
            return
        caller = self._chan(msg)
        dest.dialed_by = caller.uid if caller else None
        dest.dial_string = msg.get("DialString", "")
        if caller is not None:
            # the callee inherits what the caller carries
            for k, v in caller.vars.items():
                dest.vars.setdefault(k, v)
        origin = self._origin(caller)
        # what the carrier is shown: the outgoing channel's connected line
        ani = msg.get("DestConnectedLineNum") if dest.endpoint in self._trunks else None
        if ani in UNKNOWN_CID:
            ani = None
        if origin is not None:
            self._start_caller(out, origin, ts, ani)
        ext = self._phones.get(dest.endpoint or "")
        if ext is not None and caller is None and self._var(dest, "CallBackID"):
            # A callback's first leg rings its owner: the owner places the call (dial-out to
            # the destination, shown to it as connected line), never a dial-in from itself.
            shown = msg.get("DestConnectedLineNum", "")
            target = None if shown in UNKNOWN_CID else shown
            dest.dialed = target
            fields = {
                **self._party(dest).caller_fields(),
                "CalledNumber": self._dir.dialed(target),
                **self._ext_fields("Called", self._number_ext(target)),
            }
            dest.out_comp = self._start(out, dest, ext, OUT, ts, fields, kind="callback")
        elif ext is not None and caller is not None:
            src = origin or caller
            if src.transferred_by is not None:
                # after a blind transfer the target is called on behalf of the transferer
                # but will talk to the transferee: that one is the RemoteNumber
                fields = {**src.transferred_by.caller_fields(), "RemoteNumber": self._party(src).num}
                src.transferred_by = None
            else:
                fields = self._party(src, caller).caller_fields(self._via(src))
            fields.update({"CalledNumber": ext.extended, **self._ext_fields("Called", ext)})
            self._start(out, dest, ext, IN, ts, fields)
        elif dest.endpoint in self._trunks:
            fwd = dest.vars.get(self.config.variables.forwarded_from)
            fwd_ext = self._phones.get(fwd or "")
            if fwd_ext is not None:
                # the forwarding extension calls out on behalf of the caller, who is the
                # party the forward target will talk to (RemoteNumber)
                fsrc = origin or caller
                fields = {
                    **self._dir.phone(fwd_ext).caller_fields(),
                    "CalledNumber": dest.dial_string.split("@", 1)[0] or dest.dialed,
                    "Transfered": "yes",
                    "ANI": ani,
                    "RemoteNumber": self._party(fsrc, caller).num if fsrc is not None else None,
                }
                dest.out_comp = self._start(out, dest, fwd_ext, OUT, ts, fields)

    def _on_blindtransfer(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        if msg.get("Result") != "Success":
            return
        transferee = self.channels.get(msg.get("TransfereeUniqueid", ""))
        transferer = self.channels.get(msg.get("TransfererUniqueid", ""))
        if transferee is None:
            return
        if transferer is not None:
            transferee.transferred_by = self._party(transferer)
            return
        name = msg.get("TransfererCallerIDName", "")
        name = "" if name in UNKNOWN_CID else name
        ext = self._phones.get(endpoint_of(msg.get("TransfererChannel", ""))[1] or "")
        if ext is not None:
            transferee.transferred_by = self._dir.phone(ext, name)
        else:
            transferee.transferred_by = self._dir.internal(msg.get("TransfererCallerIDNum", ""), name)

    def _on_dialend(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        dest = self._chan(msg, "Dest")
        status = msg.get("DialStatus", "")
        if dest is None or status in IGNORED_DIALSTATUS:
            return
        caller = self._chan(msg)
        origin = self._origin(caller)
        if status == "ANSWER":
            for comp in dest.comps:
                # a callback owner's dial-out is answered by its destination, not by itself
                if comp.kind != "callback":
                    self._answer(out, comp, ts)
            if origin is not None and origin.out_comp is not None:
                self._answer(out, origin.out_comp, ts)
            if origin is not None:
                # a person answered after the IVR
                for comp in origin.comps:
                    if comp.kind == "ivr" and comp.bridged_at is None and not comp.ended:
                        comp.bridged_at = ts
        elif dest.dial_outcome is None:
            dest.dial_outcome = status
        if origin is not None and status != "ANSWER":
            origin.last_dial_outcome = status

    def _answer(self, out: list[Emitted], comp: Component, ts: int) -> None:
        if comp.answered_at is None and not comp.ended:
            comp.answered_at = ts
            self._emit(out, comp, "answer", ts, CallStatus="ANSWER")

    def _on_bridgeenter(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is not None and chan.bridged_since is None:
            chan.bridged_since = ts

    def _on_bridgeleave(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is not None and chan.bridged_since is not None:
            chan.bridged_total += ts - chan.bridged_since
            chan.bridged_since = None

    def _outcome(self, chan: Channel, comp: Component, cause: str) -> str:
        if comp.kind == "ivr":
            return "ANSWER" if chan.up_at is not None else "CANCEL"
        if comp.kind == "queue-in":
            if comp.bridged_at is not None:
                return "ANSWER"
            return "CANCEL" if chan.abandoned else "NOANSWER"
        if comp.answered_at is not None:
            return "ANSWER"
        if comp is chan.out_comp and chan.dialed_by is None:
            status = chan.dial_status_var or chan.last_dial_outcome
            return status or "CANCEL"
        if chan.dial_outcome:
            return chan.dial_outcome
        return {"17": "BUSY", "34": "CONGESTION", "38": "CONGESTION", "3": "CHANUNAVAIL"}.get(
            cause, "NOANSWER"
        )

    def _on_hangup(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            return
        self._on_bridgeleave(msg, ts, out)
        cause = msg.get("Cause", "")
        if self._hand_over(chan):
            self._drop(chan)
            return
        rec = self._var(chan, "RecID") or chan.call.vars.get("MIXMONITOR_FILENAME")
        for comp in chan.comps:
            if comp.ended:
                continue
            comp.ended = True
            extra: dict[str, Any] = {}
            if comp.kind == "ivr":
                duration = ts - (chan.up_at if chan.up_at is not None and chan.up_at > comp.started_at
                                 else comp.started_at) if chan.up_at is not None else 0  # fmt: skip
                extra["Bridged"] = "yes" if comp.bridged_at is not None else "no"
                bridged = (ts - comp.bridged_at) if comp.bridged_at is not None else None
            elif comp.kind == "queue-in":
                duration = (ts - comp.bridged_at) if comp.bridged_at is not None else 0
                extra["Bridged"] = "yes" if comp.bridged_at is not None else "no"
                bridged = duration or None
            else:
                duration = (ts - comp.answered_at) if comp.answered_at is not None else 0
                answered = comp.answered_at is not None
                bridged = chan.bridged_total if answered and chan.bridged_total else None
            self._emit(
                out,
                comp,
                "hangup",
                ts,
                CallStatus=self._outcome(chan, comp, cause),
                Duration=duration,
                BridgedDuration=bridged,
                RecID=rec,
                **extra,
            )
        self._drop(chan)

    def _drop(self, chan: Channel) -> None:
        self.channels.pop(chan.uid, None)
        if self._local_uids.get(chan.name) == chan.uid:
            del self._local_uids[chan.name]
        call = chan.call
        call.live.discard(chan.uid)
        if not call.live:
            self.calls.pop(call.linkedid, None)

    def _hand_over(self, chan: Channel) -> bool:
        """A Local;1 that goes away while the agent it reached talks on (optimization):
        its open components continue on the real agent channel instead of ending."""
        if not chan.is_local or not chan.name.endswith(";1"):
            return False
        open_comps = [c for c in chan.comps if not c.ended and c.answered_at is not None]
        if not open_comps:
            return False
        partner = self._partner(chan)
        real = None
        if partner is not None:
            real = next((c for c in self.channels.values() if c.dialed_by == partner.uid and c.up_at), None)
        if real is None:
            return False
        real.comps.extend(open_comps)
        chan.comps = [c for c in chan.comps if c not in open_comps]
        return not chan.comps

    _handlers: ClassVar[dict[str, Callable[[Translator, Message, int, list[Emitted]], None]]] = {
        "Newchannel": _on_newchannel,
        "NewCallerid": _on_newcallerid,
        "Newexten": _on_newexten,
        "VarSet": _on_varset,
        "DialBegin": _on_dialbegin,
        "DialEnd": _on_dialend,
        "BridgeEnter": _on_bridgeenter,
        "BridgeLeave": _on_bridgeleave,
        "Hangup": _on_hangup,
        "Newstate": _on_newstate,
        "QueueCallerJoin": _on_queuecallerjoin,
        "QueueCallerAbandon": _on_queuecallerabandon,
        "AgentCalled": _on_agentcalled,
        "AgentConnect": _on_agentconnect,
        "UserEvent": _on_userevent,
        "OriginateResponse": _on_originateresponse,
        "BlindTransfer": _on_blindtransfer,
    }
