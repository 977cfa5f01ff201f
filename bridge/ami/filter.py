"""Early filter: which raw AMI messages the translator can use, decided on bytes.

VarSet and Newexten are most of an AMI stream; most of them, and many other events
(RTCP reports, device states, connected-line updates...), no translator rule reads. A
bridge on a busy PBX spends its time parsing them. :func:`wanted` looks at the first
line (and, for VarSet, Newexten and Newstate, one header: the variable name, priority 1
or VoiceMail, state Up) without decoding the message; everything it refuses is still
framed (and recorded, for ``ami-bridge record``) but never parsed. Tests replay every
fixture with and without this filter and require the same events, so a rule that needs
a message the filter drops shows up as a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bridge.config import Config

#: events some translator rule reads
EVENTS = frozenset(
    b"Event: " + name.encode()
    for name in (
        "Newchannel", "NewCallerid", "Newexten", "Newstate", "VarSet", "DialBegin", "DialEnd",
        "BridgeEnter", "BridgeLeave", "Hangup", "QueueCallerJoin", "QueueCallerAbandon", "AgentCalled",
        "AgentConnect", "UserEvent", "OriginateResponse", "BlindTransfer", "Shutdown",
    )
)  # fmt: skip
#: VarSet variables some rule reads (plus the configured channel variables, set with __)
VARIABLES = frozenset({b"DIALSTATUS", b"MIXMONITOR_FILENAME", b"VM_MESSAGEFILE", b"VMSTATUS"})


#: extensions (exten names) the dialplan uses for its own purposes; never "what was dialed"
SPECIAL_EXTENS = frozenset({b"", b"s", b"h", b"t", b"i", b"T", b"e", b"o", b"a"})
#: applications Asterisk shows on the channels it dials (their caller is already known)
DIALED_APPS = frozenset({b"AppDial", b"AppDial2", b"AppQueue"})


def configured_variables(config: Config) -> frozenset[bytes]:
    """The channel variable names a configuration makes the translator read."""
    return frozenset(name.encode() for name in config.variables.model_dump().values())


@dataclass(frozen=True)
class Needs:
    """What a configuration makes the translator read beyond the fixed rules."""

    #: channel variables (besides the inherited ``__`` ones, always kept)
    variables: frozenset[bytes] = frozenset()
    #: IVR contexts (entered at exten ``s``); None: unknown, keep every such entry
    ivr_contexts: frozenset[bytes] | None = None


def needs(config: Config) -> Needs:
    """The :class:`Needs` of a configuration."""
    ivrs = frozenset(e.context.encode() for e in config.extensions if e.type == "ivr" and e.context)
    return Needs(configured_variables(config), ivrs)


def _value(block: bytes, key: bytes, *, near_end: bool = False) -> bytes | None:
    """The value of the ``\\nKey: value`` line of ``block`` (``key`` = ``b"\\nKey: "``).

    ``near_end``: the event's own headers come after the channel snapshot (a header
    that appears once): searching from the end finds them sooner.
    """
    i = block.rfind(key) if near_end else block.find(key)
    if i < 0:
        return None
    i += len(key)
    return block[i : block.find(b"\n", i)].rstrip(b"\r")


_NAMES: dict[frozenset[bytes], frozenset[bytes]] = {}


def _names(extra_variables: frozenset[bytes]) -> frozenset[bytes]:
    """Every VarSet ``Variable`` line value :func:`_varset` accepts, as the bytes up to LF."""
    names = _NAMES.get(extra_variables)
    if names is None:
        exact = {*VARIABLES, *(b"_" + v for v in VARIABLES), *extra_variables}
        names = _NAMES[extra_variables] = frozenset({*exact, *(n + b"\r" for n in exact)})
    return names


def _varset(block: bytes, needs: Needs) -> bool:
    # the Variable line is the event's own, after the channel snapshot: search from the end
    i = block.rfind(b"\nVariable: ")
    if i < 0:
        return True
    name = block[i + 11 : block.find(b"\n", i + 11)]
    return name.startswith(b"__") or name in _names(needs.variables)  # "__": inherited, always


def _newexten(block: bytes, needs: Needs) -> bool:
    # What the translator reads in Newexten: the first real extension a caller's channel
    # enters (what it dialed), entering an IVR context, and VoiceMail starting. All but
    # VoiceMail happen at priority 1 and never on the channels Dial/Queue create.
    app = _value(block, b"\nApplication: ", near_end=True)
    if app == b"VoiceMail":
        return True
    if app in DIALED_APPS or _value(block, b"\nPriority: ") != b"1":
        return False
    if _value(block, b"\nExten: ") not in SPECIAL_EXTENS or needs.ivr_contexts is None:
        return True
    return _value(block, b"\nContext: ") in needs.ivr_contexts


def _newstate(block: bytes, needs: Needs) -> bool:
    return _value(block, b"\nChannelState: ") == b"6"  # only a channel going Up matters


_Rule = Callable[[bytes, Needs], bool]
_SPECIAL: dict[bytes, _Rule] = {b"Event: VarSet": _varset, b"Event: Newexten": _newexten,
                                b"Event: Newstate": _newstate}  # fmt: skip
#: the first line of a message (with its CR, or without for bare-LF input) -> its rule
_RULES: dict[bytes, Literal[True] | _Rule] = {
    line + cr: _SPECIAL.get(line, True) for line in EVENTS for cr in (b"\r", b"")
}


_NOTHING_MORE = Needs()


def wanted(block: bytes, needs: Needs = _NOTHING_MORE) -> bool:
    """False only for messages no translator rule needs (responses are always wanted)."""
    rule = _RULES.get(block[: block.find(b"\n")])
    if rule is None:
        return not block.startswith(b"Event: ")  # responses, list items of actions: the caller's
    if rule is True:
        return True
    return rule(block, needs)


def eventfilters(config: Config) -> list[str]:
    """manager.conf lines that make Asterisk itself drop what :func:`wanted` would drop.

    Asterisk's advanced event filters (Asterisk 21+, and 20.x/18.x certified builds
    that have them): with include filters only, every other event is dropped before it
    is even formatted for the bridge's session. Action responses and the list events
    they carry (CoreShowChannels for the resync) are not filtered by Asterisk. The
    bridge keeps its own filter too, so the lines are an optimisation, never required.
    """
    lines = ["; ami-bridge: only the events the bridge reads (put these in the bridge user's section)"]
    special = {name.removeprefix(b"Event: ").decode() for name in _SPECIAL}
    for event in sorted(e.removeprefix(b"Event: ").decode() for e in EVENTS):
        if event not in special:
            lines.append(f"eventfilter(action(include),name({event})) =")
    names = sorted({v.decode() for v in VARIABLES} | {v.decode() for v in configured_variables(config)})
    lines.append(f"eventfilter(action(include),name(VarSet),header(Variable),method(regex)) = "
                 f"^(__.*|_?({'|'.join(names)}))$")  # fmt: skip
    lines.append("eventfilter(action(include),name(Newexten),header(Priority),method(exact)) = 1")
    lines.append("eventfilter(action(include),name(Newexten),header(Application),method(exact)) = VoiceMail")
    lines.append("eventfilter(action(include),name(Newstate),header(ChannelState),method(exact)) = 6")
    return lines
