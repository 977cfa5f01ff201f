"""Sans-I/O call translator: AMI messages in, Telphin extension events out.

Theory of operation
-------------------
The translator tracks channels, calls and components (:mod:`.model`: what each holds),
all dropped when a call ends. A component is one visit of the call to one configured
extension; it emits ``dial-in``/``dial-out`` when it starts, at most one ``answer`` and
exactly one ``hangup`` when its channel hangs up.

Where to find a rule (each module reads like the part of ``semantics.md`` it implements):

* :mod:`.dial`: phones placing and receiving calls, answers, hangups and their outcome,
  forwarding to an external number; every other flow builds on it;
* :mod:`.queue`, :mod:`.ivr`: the queue's in and out threads, the IVR's;
* :mod:`.transfer` (blind and attended), :mod:`.pickup` (pickup and parking),
  :mod:`.conference`, :mod:`.callback`, :mod:`.voicemail`, :mod:`.messages`;
* :mod:`.parties`: who a party is and how its number is written (extended numbers
  ``000*101`` for the PBX's own extensions, external numbers as received);
* :mod:`.wire`: the one place that builds the events' fields;
* :mod:`.state`: the state and the lookups every rule shares.

This module only routes: which AMI event feeds which rules, and in what order when
several flows care about one event.

Time comes only from the ``Timestamp`` header (or the ``now`` passed in, for events
Asterisk sends without one). Nothing here does I/O; :meth:`Translator.feed` returns
the events to emit, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bridge.ami.message import Message
from bridge.translate.callback import CallbackRules
from bridge.translate.conference import ConferenceRules
from bridge.translate.dial import DialRules
from bridge.translate.ivr import IvrRules
from bridge.translate.messages import MessageRules
from bridge.translate.model import Channel, Component, Emitted, Recording, record_id
from bridge.translate.pickup import PickupRules
from bridge.translate.queue import QueueRules
from bridge.translate.transfer import TransferRules
from bridge.translate.voicemail import VOICEMAIL_VARIABLES, VoicemailRules
from bridge.translate.wire import FIELD_ORDER, diversion_number, ordered

if TYPE_CHECKING:
    from bridge.config import Config

__all__ = ["FIELD_ORDER", "PENDING_WAIT_US", "Emitted", "Translator", "diversion_number", "ordered",
           "timestamp_us"]  # fmt: skip

#: how long (stream time) a hangup waits for the events Asterisk may send after it
PENDING_WAIT_US = 500_000
#: events that leave held dials held: they say nothing about who dials whom, so they may
#: come between a consultation's DialBegin and the transferer's BridgeEnter (a DialBegin
#: then is held too, behind it: the Local pairs a wrapped phone is dialed through)
_KEEP_HOLDING = frozenset({"BridgeEnter", "BridgeLeave", "Newchannel", "NewCallerid", "Newexten", "VarSet",
                           "Newstate", "DialBegin"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class LiveComponent:
    """A component in progress, for the current calls: its channel, the channel on the
    other side (``peer``: the one an action on the other party takes) and the real party
    behind it (``far``: Local pairs followed), and its record id if recorded."""

    chan: Channel
    comp: Component
    peer: Channel | None
    far: Channel | None
    record_uuid: str | None


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


class Translator(
    CallbackRules,
    QueueRules,
    IvrRules,
    TransferRules,
    PickupRules,
    ConferenceRules,
    VoicemailRules,
    MessageRules,
):
    """Feed AMI messages in stream order; get the extension events they cause."""

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
        if self._pending:
            self._flush_pending(out, before=ts - PENDING_WAIT_US)
        if not self._held:
            handler(self, msg, ts, out)
            return out
        if (event not in _KEEP_HOLDING and self._concerns_held(msg)) or self._held_since(
            ts
        ) > PENDING_WAIT_US:
            self._release_held(out)
        handler(self, msg, ts, out)
        if self._held and event in ("BridgeEnter", "DialBegin"):
            self._release_held(out, ready_only=True)
        return out

    def reconfigure(self, config: Config) -> None:
        """Use a new configuration (a reload) from the next message on.

        Only the lookups built from the configuration are replaced (extensions by device,
        number, queue, IVR context and mailbox; trunks; variable names): the calls in
        progress stay tracked. A component already started keeps the extension it
        started with, so it gets its remaining events (answer, hangup) even when that
        extension was removed or changed; only new components see the new configuration
        (a removed extension gets none, an added one gets them for the calls that reach
        it from now on, including a call already in progress).
        """
        self._configure(config)

    @property
    def waiting(self) -> bool:
        """Hangups wait for events Asterisk may still send (see :meth:`flush`)."""
        return bool(self._pending or self._held)

    # ---- what is going on now (read by the API's current calls) ------------------------

    def live_components(self) -> list[LiveComponent]:
        """Every component not ended yet, with its channel, the party on the other side
        (the channel bridged with it, else the one dialing it or dialed by it) and its
        record id when the call is recorded."""
        out = []
        for chan in self.channels.values():
            for comp in chan.comps:
                if comp.ended:
                    continue
                peer = self._bridge_peer(chan)
                if peer is None:
                    dialer = self.channels.get(chan.dialed_by or "")
                    peer = dialer or next(iter(self._dialed(chan)), None)
                recorded = chan.call.recording is not None or self._var(chan, "RecID") is not None
                rec = record_id(comp.ext.id, comp.sub_id) if recorded else None
                far = self._far_end(peer) if peer is not None else None
                out.append(LiveComponent(chan, comp, peer, far, rec))
        return out

    def take_recordings(self) -> tuple[list[Recording], list[str]]:
        """The recordings named by the events emitted since the last call, and the
        channels whose recordings ended meanwhile (see ``keep_recordings``)."""
        taken = self.recordings, self.recordings_done
        self.recordings, self.recordings_done = [], []
        return taken

    def flush(self) -> list[Emitted]:
        """The hangups still waiting for events Asterisk sends either before or after a
        Hangup (DialEnd, BridgeLeave, OriginateResponse), with what is known. The stream
        itself lets them go ``PENDING_WAIT_US`` after the Hangup; call this when the stream
        ends or stays quiet that long."""
        out: list[Emitted] = []
        self._release_held(out)
        self._flush_pending(out)
        return out

    def resync(self, live_uniqueids: set[str], now_us: int) -> list[Emitted]:
        """After an AMI outage: end what ended while we were away.

        ``live_uniqueids`` is what CoreShowChannels lists now. Every tracked channel not
        in it hung up during the outage: its components get their hangup (at ``now_us``:
        the real time is unknown, and so is the outcome beyond what was seen). Channels
        still up stay tracked, so no dial-in is ever sent twice.
        """
        out = self.flush()
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

    def mark_partial(self) -> None:
        """Every call in progress is no longer seen whole (an AMI outage: what happened
        meanwhile is unknown), so :attr:`partial` names it (issue 19)."""
        self.partial.update(call.call_id for call in self.calls.values())

    def forget_partial(self) -> None:
        """Forget the partial calls that ended, once no hangup of theirs waits."""
        if self.partial and not self.waiting:
            self.partial &= {call.call_id for call in self.calls.values()}

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    # ---- events several flows read ------------------------------------------------------

    def _on_newexten(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            return
        if chan.dialed is None and chan.dialed_by is None:
            self._note_dialed(chan, msg)
        if self._ivrs:
            ivr = self._ivrs.get(msg.get("Context", ""))
            if ivr is not None:
                self._ivr_entered(out, chan, ivr, ts)
        if msg.get("Application", "") == "VoiceMail":
            self._voicemail_started(chan, ts)

    def _on_newstate(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None or msg.get("ChannelState") != "6" or chan.up_at is not None:
            return
        chan.up_at = ts
        self._ivr_answered(out, chan, ts)

    def _on_varset(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        chan = self._chan(msg)
        if chan is None:
            return
        name = msg.get("Variable", "")
        value = msg.get("Value", "")
        if name == "DIALSTATUS":
            self._dial_status(out, chan, value, ts)
        elif name in VOICEMAIL_VARIABLES:
            self._voicemail_varset(out, chan, name, value, ts)
        elif name == "MIXMONITOR_FILENAME" and value:
            base = value.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            chan.call.vars.setdefault("MIXMONITOR_FILENAME", base)
            chan.records = True
            if chan.call.recording is None:
                chan.call.recording = (value, chan.uid)
        else:
            self._set_var(chan, name, value)

    def _on_dialbegin(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        if self._held or self._waits_for_consulting(msg):
            self._held.append((msg, ts))
            return
        self._dial(msg, ts, out)

    def _dial(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        dial = self._dial_begin(msg, ts, out)
        if dial is None or self._owner_rung(out, dial, msg, ts) or self._phone_rung(out, dial, ts):
            return
        self._forwarded_leg(out, dial, ts)

    # ---- a consultation's dial that came before the transferer joined its bridge ------

    def _waits_for_consulting(self, msg: Message) -> bool:
        """A Local pair's second half dials while its first half is neither dialed nor in
        a bridge with anyone yet: an attended transfer's consultation whose transferer
        joins that bridge in the same instant, before or after (Asterisk sends either);
        or a pair whose first half's own DialBegin is still to come (Asterisk runs the
        second half's dialplan at once, so its dials may come first)."""
        caller = self.channels.get(msg.get("Uniqueid") or "")
        if caller is None or not caller.is_local or not caller.name.endswith(";2"):
            return False
        local1 = self._partner(caller)
        return local1 is not None and local1.dialed_by is None and self._bridge_peer(local1) is None

    def _held_since(self, ts: int) -> int:
        """How long (µs of stream time) the oldest held dial has waited at ``ts``."""
        return ts - min(t for _, t in self._held)

    def _concerns_held(self, msg: Message) -> bool:
        """Whether a message may depend on the held dials: it names one of their channels
        (or those channels' other Local halves), or names no channel at all."""
        uid = msg.get("Uniqueid")
        if not uid:
            return True
        for held, _ in self._held:
            for key in ("Uniqueid", "DestUniqueid"):
                chan = self.channels.get(held.get(key) or "")
                if chan is None:
                    continue
                partner = self._partner(chan)
                if uid == chan.uid or (partner is not None and uid == partner.uid):
                    return True
        return False

    def _release_held(self, out: list[Emitted], ready_only: bool = False) -> None:
        """Held dials go on: those that no longer wait, up to the first that still does
        (``ready_only``: its consulting phone joined the bridge, or its first half was
        dialed), or all of them before any event that may depend on them, or when they
        are ``PENDING_WAIT_US`` old (nobody will join then). A dial into a Local pair goes
        before the dials the pair makes."""
        if not self._held:
            return
        held = self._in_dial_order(self._held)
        go = len(held)
        if ready_only:  # those before the first that still waits
            go = next((i for i, (msg, _) in enumerate(held) if self._waits_for_consulting(msg)), go)
        self._held = held[go:]
        for msg, ts in held[:go]:
            self._dial(msg, ts, out)

    def _in_dial_order(self, held: list[tuple[Message, int]]) -> list[tuple[Message, int]]:
        """The held dials, each DialBegin into a Local pair's first half before the
        dials of that pair's second half (otherwise in the order they came)."""
        into = {m.get("DestUniqueid"): i for i, (m, _) in enumerate(held)}
        ordered: list[tuple[Message, int]] = []
        placed: set[int] = set()

        def place(i: int) -> None:
            if i in placed:
                return
            placed.add(i)
            caller = self.channels.get(held[i][0].get("Uniqueid") or "")
            first = self._partner(caller) if caller is not None and caller.name.endswith(";2") else None
            j = into.get(first.uid) if first is not None else None
            if j is not None:
                place(j)
            ordered.append(held[i])

        for i in range(len(held)):
            place(i)
        return ordered

    def _on_dialend(self, msg: Message, ts: int, out: list[Emitted]) -> None:
        answered = self._dial_end(msg, ts, out)
        if answered is not None:
            # a person answered after the IVR
            self._person_answered(answered, ts, ("ivr",))

    _handlers: ClassVar[dict[str, Callable[[Translator, Message, int, list[Emitted]], None]]] = {
        "Newchannel": DialRules._on_newchannel,
        "NewCallerid": DialRules._on_newcallerid,
        "Newexten": _on_newexten,
        "VarSet": _on_varset,
        "DialBegin": _on_dialbegin,
        "DialEnd": _on_dialend,
        "BridgeEnter": DialRules._on_bridgeenter,
        "BridgeLeave": DialRules._on_bridgeleave,
        "Hangup": DialRules._on_hangup,
        "Newstate": _on_newstate,
        "QueueCallerJoin": QueueRules._on_queuecallerjoin,
        "QueueCallerAbandon": QueueRules._on_queuecallerabandon,
        "AgentCalled": QueueRules._on_agentcalled,
        "AgentConnect": QueueRules._on_agentconnect,
        "UserEvent": MessageRules._on_userevent,
        "OriginateResponse": CallbackRules._on_originateresponse,
        "BlindTransfer": TransferRules._on_blindtransfer,
        "AttendedTransfer": TransferRules._on_attendedtransfer,
        "Pickup": PickupRules._on_pickup,
        "ParkedCall": PickupRules._on_parkedcall,
        "UnParkedCall": PickupRules._on_unparkedcall,
        "ConfbridgeJoin": ConferenceRules._on_confbridgejoin,
    }
