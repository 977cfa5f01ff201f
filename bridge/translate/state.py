"""The translator's state and the lookups every rule uses: channels and calls by id,
channel variables, Local channel pairs, and who the party on a channel is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.translate.model import UNKNOWN_CID, Call, Channel, PendingHangup, Recording, number_in_dial_string
from bridge.translate.parties import Directory, Party

if TYPE_CHECKING:
    from bridge.ami.message import Message
    from bridge.config import Config, Extension

_VARS, _DEST_VARS = "ChanVariable", "DestChanVariable"


def _unkeyed(span: str, key: str) -> str:
    """Raw ``Key: NAME=value`` lines with the key taken out (what two keys' lines share)."""
    return span.replace("\n" + key + ":", "\n:")


class State:
    """Channels and calls in progress (all dropped when a call ends), and the PBX's
    configuration as the rules look it up."""

    def __init__(self, config: Config) -> None:
        self._configure(config)
        self.channels: dict[str, Channel] = {}
        self.calls: dict[str, Call] = {}
        #: Uniqueid of each live Local channel by name, to find a pair's other half
        self._local_uids: dict[str, str] = {}
        #: the channels in each bridge, in the order they entered (a dict: deterministic)
        self._bridges: dict[str, dict[str, None]] = {}
        #: channels that hung up and wait for what Asterisk may send after the Hangup
        self._pending: dict[str, PendingHangup] = {}
        #: DialBegins of a consultation that wait for the transferer to join its bridge
        self._held: list[tuple[Message, int]] = []
        self._last_ts = 0
        #: CallIDs of calls not seen whole: their first channel was up before the stream
        #: began (or they were in progress at a :meth:`Translator.mark_partial`); a cluster's
        #: bridge leaves their events to a bridge that saw them whole (issue 19)
        self.partial: set[str] = set()
        self.problems: list[str] = []
        #: collect :class:`Recording`s (the daemon takes them with each batch of events;
        #: a replay does not, and keeps nothing)
        self.keep_recordings = False
        self.recordings: list[Recording] = []
        #: channels whose recording ended since the daemon last took them
        self.recordings_done: list[str] = []

    def _configure(self, config: Config) -> None:
        """The lookups built from the configuration (replaced whole by a reload)."""
        self.config = config
        self._dir = Directory(config)
        self._phones = self._dir.phones
        self._by_number = self._dir.by_number
        self._trunks = self._dir.trunks
        self._queues = {e.queue: e for e in config.extensions if e.type == "queue" and e.queue}
        self._ivrs = {e.context: e for e in config.extensions if e.type == "ivr" and e.context}
        self._mailboxes = {e.mailbox: e for e in config.extensions if e.type == "phone" and e.mailbox}
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

    # ---- channels and their variables ------------------------------------------------

    def _chan(self, msg: Message, prefix: str = "") -> Channel | None:
        """The tracked channel an event names (``prefix`` "Dest" for its second channel),
        its variables brought up to date from the event."""
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
        """The value of the variable behind an event field (``CallBackID``...), if set."""
        name = self._var_of.get(field_name)
        if name is None:
            return None
        return chan.vars.get(name) or chan.call.vars.get(name) or None

    def _set_cid(self, chan: Channel, msg: Message, prefix: str) -> None:
        num = msg.get(prefix + "CallerIDNum", "")
        name = msg.get(prefix + "CallerIDName", "")
        if num not in UNKNOWN_CID:
            chan.cid_num = num
        if name not in UNKNOWN_CID:
            chan.cid_name = name

    # ---- Local channel pairs ------------------------------------------------------------

    def _dialed(self, chan: Channel) -> list[Channel]:
        """The channels ``chan`` dialed that are still there, in the order dialed."""
        return [c for uid in chan.dials if (c := self.channels.get(uid)) is not None]

    def _pending_dialed(self, chan: Channel) -> list[PendingHangup]:
        """The hangups waiting of the channels ``chan`` dialed."""
        return [p for uid in chan.dials if (p := self._pending.get(uid)) is not None]

    def _partner(self, chan: Channel) -> Channel | None:
        """The other half of a Local channel pair."""
        if not chan.is_local or len(chan.name) < 2:
            return None
        other = chan.name[:-1] + ("1" if chan.name.endswith("2") else "2")
        uid = self._local_uids.get(other)
        return self.channels.get(uid) if uid else None

    def _origin(self, chan: Channel | None) -> Channel | None:
        """The real channel behind a dialing one, following Local pairs back to their
        dialer (or, for a pair no Dial created, such as an attended transfer's
        consultation, to the channel its other half is bridged with)."""
        seen = 0
        while chan is not None and chan.is_local and seen < 16:
            seen += 1
            partner = self._partner(chan)
            if partner is None:
                return chan
            if partner.dialed_by is not None:
                chan = self.channels.get(partner.dialed_by)
                continue
            peer = self._bridge_peer(partner)
            if peer is None:
                return chan
            chan = peer
        return chan

    def _transferred(self, chan: Channel | None) -> Channel | None:
        """The channel, on the way back from a dialing one to the real caller (through
        Local pairs), that a blind transfer marked as transferee, if any."""
        seen = 0
        while chan is not None and seen < 16:
            seen += 1
            if chan.transferred_by is not None:
                return chan
            if not chan.is_local:
                return None
            partner = self._partner(chan)
            if partner is None:
                return None
            chan = self.channels.get(partner.dialed_by) if partner.dialed_by else self._bridge_peer(partner)
        return None

    def _far_end(self, chan: Channel | None) -> Channel | None:
        """The real party a channel stands for: itself, or for a Local channel whoever is
        on the other side of its pair (the channel the other half dialed and that
        answered, else the one it was dialed by or is bridged with)."""
        seen = 0
        while chan is not None and chan.is_local and seen < 16:
            seen += 1
            partner = self._partner(chan)
            if partner is None:
                return chan
            dialed = self._dialed(partner)
            nxt = next((c for c in dialed if c.up_at is not None), dialed[0] if dialed else None)
            if nxt is None and partner.dialed_by is not None:
                nxt = self.channels.get(partner.dialed_by)
            if nxt is None:
                nxt = self._bridge_peer(partner)
            if nxt is None:
                return chan
            chan = nxt
        return chan

    # ---- bridges and calls ---------------------------------------------------------------

    def _bridge_peer(self, chan: Channel) -> Channel | None:
        """Another channel in ``chan``'s bridge (a device rather than a Local one, first)."""
        members = self._bridges.get(chan.bridge or "")
        if not members:
            return None
        peers = [self.channels[uid] for uid in members if uid != chan.uid and uid in self.channels]
        return next((p for p in peers if not p.is_local), peers[0] if peers else None)

    def _enter_bridge(self, chan: Channel, bridge: str) -> None:
        if chan.bridge is not None:
            self._leave_bridge(chan)
        chan.bridge = bridge
        self._bridges.setdefault(bridge, {})[chan.uid] = None

    def _leave_bridge(self, chan: Channel) -> None:
        members = self._bridges.get(chan.bridge or "")
        if members is not None:
            members.pop(chan.uid, None)
            if not members:
                del self._bridges[chan.bridge or ""]
        chan.bridge = None

    def _join_call(self, chan: Channel, call: Call) -> None:
        """``chan`` now belongs to ``call`` (a pickup, a parked call taken, a transfer that
        joined two calls): its later components carry that call's CallID."""
        for member in (chan, self._partner(chan)):  # a Local pair moves as one
            if member is None or member.call is call:
                continue
            old = member.call
            old.live.discard(member.uid)
            if not old.live:
                self.calls.pop(old.linkedid, None)
            member.call = call
            call.live.add(member.uid)

    def _merge_calls(self, into: Call, other: Call) -> None:
        """Every channel of ``other`` joins ``into``."""
        for uid in list(other.live):
            chan = self.channels.get(uid)
            if chan is not None:
                self._join_call(chan, into)

    def _drop(self, chan: Channel) -> None:
        """Forget a channel that hung up, and its call once no channel of it is left."""
        self.channels.pop(chan.uid, None)
        if chan.is_local and self._local_uids.get(chan.name) == chan.uid:
            del self._local_uids[chan.name]
        if chan.bridge is not None:
            self._leave_bridge(chan)
        call = chan.call
        call.live.discard(chan.uid)
        if not call.live:
            self.calls.pop(call.linkedid, None)

    # ---- who is who ---------------------------------------------------------------------

    def _number_ext(self, number: str | None) -> Extension | None:
        """The extension a number dialed inside the PBX reaches, if any."""
        return self._by_number.get(number) if number else None

    def _party(self, chan: Channel, shown: Channel | None = None) -> Party:
        """Who is on ``chan``: a phone by its extended number and display name; an outside
        party by its number as received (a trunk leg the PBX dialed: the number dialed);
        anything else (a Local channel...) by its caller id, which names a phone if it is
        one's number. ``shown``: the channel whose caller id the dialplan last set (the
        one dialing, when ``chan`` is the real caller behind Local channels)."""
        ext = self._phones.get(chan.device or "")
        if ext is not None:
            return self._dir.phone(ext, chan.own_cid_name or chan.cid_name)
        src = shown or chan
        num, name = src.cid_num or chan.cid_num, src.cid_name or chan.cid_name
        if chan.device in self._trunks:
            if chan.dialed_by is not None:
                num = number_in_dial_string(chan.dial_string) or chan.dialed or num
            return Party(num, name, None)
        return self._dir.internal(num, name)

    @staticmethod
    def _via(chan: Channel) -> Extension | None:
        """The IVR or queue the call on ``chan`` is in now (the latest one still open)."""
        for comp in reversed(chan.comps):
            if comp.kind in ("ivr", "queue-in") and not comp.ended:
                return comp.ext
        return None
