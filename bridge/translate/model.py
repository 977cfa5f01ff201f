"""The call model: channels, calls and components, as the translator tracks them.

* a **channel** (by Uniqueid): its name, device (technology and endpoint), caller id,
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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only
    from bridge.config import Extension
    from bridge.translate.parties import Party

#: (extension id, event fields in the spec's order)
Emitted = tuple[int, dict[str, Any]]

#: DIALSTATUS/DialStatus values that say nothing about the outcome
IGNORED_DIALSTATUS = frozenset({"", "CONTINUE", "GOTO", "ABORT"})
#: caller id values that mean "none"
UNKNOWN_CID = frozenset({"", "<unknown>", "<Unknown>"})
#: extensions the dialplan uses for its own purposes; never "what was dialed"
SPECIAL_EXTENS = frozenset({"s", "h", "t", "i", "T", "e", "o", "a"})


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


@dataclass(slots=True)
class Dial:
    """One DialBegin: the channel dialed, the one dialing (None for an Originate's first
    leg), the real caller behind Local channels, and the caller id a trunk leg shows."""

    dest: Channel
    caller: Channel | None
    origin: Channel | None
    ani: str | None
