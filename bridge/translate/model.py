"""The call model: channels, calls and components, as the translator tracks them.

* a **channel** (by Uniqueid): its name, device (``PJSIP/101``, ``SIP/150010001``), caller id,
  the number first dialed, the channel variables seen (inherited ones included), who
  dialed it, its dial outcome, bridge time, and the components that live on it;
* a **call**: one per first channel (keyed by that channel's Linkedid at creation, so a
  later Linkedid change does not split it), holding the CallID, the SubCallID counter
  and the first non-empty value of each configured variable;
* a **component**: one visit of the call to one configured extension, with its
  SubCallID, flow (``in``/``out``), the fields all its events repeat, answer time and
  outcome. It emits dial-in/dial-out, at most one answer, exactly one hangup.

Plain data, no rules: the rules are in the flow modules (:mod:`.dial`, :mod:`.queue`...).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only
    from bridge.config import Extension
    from bridge.translate.parties import Party

#: (extension id, event fields in the spec's order)
Emitted = tuple[int, dict[str, Any]]


def record_id(extension_id: int, sub_call_id: str) -> str:
    """The RecID of a recorded component, shaped as Telphin's (``<extension id>-<32 hex>``)
    and derived from its SubCallID, so a replay mints the same one every time."""
    return f"{extension_id}-{hashlib.blake2b(sub_call_id.encode(), digest_size=16).hexdigest()}"


@dataclass(slots=True)
class Recording:
    """A recording an event names by its RecID: what the daemon keeps so that the API can
    serve the file (the event itself, where the file is, and whether it is complete)."""

    record_uuid: str
    extension_id: int
    #: the hangup or voicemail event that carries the RecID
    event: dict[str, Any]
    #: "call" (MixMonitor) or "voicemail" (a message left)
    kind: str
    #: the recording's own name: the recording variable (RECID, CALLFILENAME) or the
    #: MixMonitor file's name; a voicemail message's ``context/box/folder/msgNNNN``
    name: str
    #: the file as Asterisk names it (a voicemail message's without its format's extension)
    path: str | None
    #: the channel still recording it (the recording is complete when it hangs up); None:
    #: complete now
    channel: str | None


#: DIALSTATUS/DialStatus values that say nothing about the outcome
IGNORED_DIALSTATUS = frozenset({"", "CONTINUE", "GOTO", "ABORT"})
#: caller id values that mean "none"
UNKNOWN_CID = frozenset({"", "<unknown>", "<Unknown>"})
#: extensions the dialplan uses for its own purposes; never "what was dialed"
SPECIAL_EXTENS = frozenset({"s", "h", "t", "i", "T", "e", "o", "a"})


#: technologies whose channels are not devices
_NO_DEVICE = frozenset({"Local", "Message", "Bridge", "Announcer", "Recorder", "Snoop", "CBAnn", "CBRec"})
#: technologies whose unique suffix is 8 hex digits (``SIP/voipgrid-siproute-docker-00000025``:
#: the peer name has dashes too); the others (IAX2, DAHDI...) end in ``-<number>``
_HEX_SUFFIXED = frozenset({"PJSIP", "SIP"})
_HEX = "0123456789abcdef"


def _unsuffixed(tech: str, rest: str) -> str:
    """A channel name without its technology and unique suffix (the name itself if it
    has none)."""
    if tech in _HEX_SUFFIXED:
        if len(rest) > 9 and rest[-9] == "-" and not rest[-8:].strip(_HEX):
            return rest[:-9]
        return rest
    head, dash, tail = rest.rpartition("-")
    return head if dash and tail.isascii() and tail.isdigit() else rest


def device_of(channel: str) -> tuple[str, str | None]:
    """(technology, device) of a channel name, the device as the config names it:
    ``PJSIP/101-0000002a`` -> ("PJSIP", "PJSIP/101"), ``SIP/voip-gw-0000002a`` -> ("SIP",
    "SIP/voip-gw"), ``DAHDI/i1/74951234567-5`` -> ("DAHDI", "DAHDI/i1"); ``Local/...``
    and other non-device channels -> (tech, None). A name with no suffix (an Originate's
    ``Channel: PJSIP/106``) is the device itself."""
    tech, _, rest = channel.partition("/")
    if tech in _NO_DEVICE or not rest:
        return tech, None
    name = _unsuffixed(tech, rest)
    if tech == "DAHDI":
        name = name.split("/", 1)[0]  # span or group, then the number dialed
    return tech, f"{tech}/{name}"


def number_in_dial_string(dial_string: str) -> str | None:
    """The number a trunk leg dials, from Dial's argument: ``+7916...@trunk`` (PJSIP),
    ``trunk/+7916...`` (SIP, IAX2), ``g0/+7916...`` (DAHDI), ``trunk/sip:+7916@host``
    (PJSIP to a URI); None when it names only the device."""
    _, sep, tail = dial_string.partition("/")
    if sep:
        if tail.startswith(("sip:", "sips:", "tel:")):
            return tail.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0] or None
        return tail.split("@", 1)[0] if "@" in tail and "/" not in tail else tail.rsplit("/", 1)[-1] or None
    number, at, _ = dial_string.partition("@")
    return number or None if at else None


@dataclass(slots=True)
class Call:
    call_id: str
    linkedid: str
    components: int = 0
    vars: dict[str, str] = field(default_factory=dict)
    #: (file, channel) of the call's MixMonitor recording, once one started
    recording: tuple[str, str] | None = None
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
    #: "call" (a phone's leg), "callback" (its owner's leg), "queue-in", "queue-out", "ivr",
    #: "consult" (a transferer's consultation), "park" (a parked call taken from its
    #: slot), "pickup" (a ringing call picked up), "conference"
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
    #: the device as the config names it (``PJSIP/101``); None for Local and the like
    device: str | None
    #: one half of a Local channel pair
    is_local: bool = False
    #: MixMonitor records on it (its recordings are complete when it hangs up)
    records: bool = False
    cid_num: str = ""
    cid_name: str = ""
    #: caller name when the channel appeared: a phone's own display name, before the
    #: dialplan changes the caller id for the trunk (what the trunk shows is the ANI)
    own_cid_name: str = ""
    dialed: str | None = None
    vars: dict[str, str] = field(default_factory=dict)
    dialed_by: str | None = None
    #: the Uniqueids of the channels it dialed (DialBegin), in order
    dials: list[str] = field(default_factory=list)
    dial_string: str = ""
    dial_outcome: str | None = None
    #: when a Dial that did not ring it was answered by it (a picker, before its Pickup)
    answered_dial_at: int | None = None
    #: on a Local pair's dialing half and what it dials: how the Dial further out ended
    outer_outcome: str | None = None
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
    #: transfer targets are then called (until that Dial is over)
    transferred_by: Party | None = None
    #: set once the transferee's Dial has dialed a target on the transferer's behalf
    transfer_dialed: bool = False
    #: the bridge the channel is in now (BridgeUniqueid)
    bridge: str | None = None
    #: on the dialing half of a Local pair an attended transfer created: the transferer's
    #: consultation call, which that half's Dial answers
    consult: Component | None = None
    #: when a transferer left the call (its components end then, once it left its bridge)
    left_at: int | None = None
    #: components living on another channel that also end when this one hangs up (a
    #: consultation ends when the transferer or the consultation's Local channel goes)
    also_ends: list[Component] = field(default_factory=list)


@dataclass(slots=True)
class PendingHangup:
    """A channel that hung up before Asterisk told all it may tell after the Hangup (it
    sends some events either way): its hangups wait for them, a short while at most."""

    chan: Channel
    ts: int
    cause: str
    #: the DialEnd that says how the channel's dial ended
    dial: bool
    #: the BridgeLeave that ends its bridged time
    bridge: bool
    #: the OriginateResponse that says how a callback's owner leg ended
    originate: bool

    @property
    def waiting(self) -> bool:
        return self.dial or self.bridge or self.originate


@dataclass(slots=True)
class Dial:
    """One DialBegin: the channel dialed, the one dialing (None for an Originate's first
    leg), the real caller behind Local channels, and the caller id a trunk leg shows."""

    dest: Channel
    caller: Channel | None
    origin: Channel | None
    ani: str | None
