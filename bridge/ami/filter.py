"""Early filter: which raw AMI messages the translator can use, decided on bytes.

VarSet and Newexten are most of an AMI stream; most of them, and many other events
(RTCP reports, device states, connected-line updates...), no translator rule reads. A
bridge on a busy PBX spends its time parsing them. :func:`wanted` (:func:`early_filter`
for one configuration) looks at the first line (and, for VarSet, Newexten and Newstate,
a header or two: the variable name, priority 1 or VoiceMail, state Up) without decoding
the message; everything it refuses is still
framed (and recorded, for ``ami-bridge record``) but never parsed. Tests replay every
fixture with and without this filter and require the same events, so a rule that needs
a message the filter drops shows up as a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.config import Config

#: events some translator rule reads
EVENTS = frozenset(
    b"Event: " + name.encode()
    for name in (
        "Newchannel", "NewCallerid", "Newexten", "Newstate", "VarSet", "DialBegin", "DialEnd",
        "BridgeEnter", "BridgeLeave", "Hangup", "QueueCallerJoin", "QueueCallerAbandon", "AgentCalled",
        "AgentConnect", "UserEvent", "OriginateResponse", "BlindTransfer", "AttendedTransfer", "Pickup",
        "ParkedCall", "UnParkedCall", "ConfbridgeJoin", "Shutdown",
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


def _value(block: bytes, key: bytes) -> bytes | None:
    """The value of the first ``\\nKey: value`` line of ``block`` (``key`` = ``b"\\nKey: "``)."""
    i = block.find(key)
    if i < 0:
        return None
    i += len(key)
    return block[i : block.find(b"\n", i)].rstrip(b"\r")


#: the line ends a value may have (Asterisk writes CRLF; recordings may carry bare LF)
_ENDS = (b"\r\n", b"\n")
_VOICEMAIL = tuple(b"VoiceMail" + end for end in _ENDS)
_DIALED = tuple(app + end for app in sorted(DIALED_APPS) for end in _ENDS)
_PRIORITY_1 = tuple(b"1" + end for end in _ENDS)
_STATE_UP = tuple(b"6" + end for end in _ENDS)  # only a channel going Up matters
#: events some rule reads in part only: their own check decides
_CHECKED = (b"Event: VarSet", b"Event: Newexten", b"Event: Newstate")


_VARSET = b"Event: VarSet"


def early_filter(needs: Needs | None = None) -> Callable[[bytes], bool]:
    """:func:`wanted` for one :class:`Needs`, as a function of the raw block alone.

    It runs on every message the PBX sends, so it is one closure whose checks are
    C-level searches of the bytes (a header found, its value compared in place), with
    VarSet, half of all messages, decided inline.
    """
    needs = needs or Needs()
    exact = {*VARIABLES, *(b"_" + v for v in VARIABLES), *needs.variables}
    #: a wanted VarSet's Variable value up to its LF (with the CR of a CRLF line end)
    names = frozenset({*exact, *(name + b"\r" for name in exact)})
    ivrs = needs.ivr_contexts

    def newexten(block: bytes) -> bool:
        # What the translator reads in Newexten: the first real extension a caller's channel
        # enters (what it dialed), entering an IVR context, and VoiceMail starting. All but
        # VoiceMail happen at priority 1 and never on the channels Dial/Queue create.
        app = block.rfind(b"\nApplication: ") + 14  # the event's own header: near the end
        if app >= 14 and block.startswith(_VOICEMAIL, app):
            return True
        priority = block.find(b"\nPriority: ")
        if priority < 0 or not block.startswith(_PRIORITY_1, priority + 11):
            return False
        if app >= 14 and block.startswith(_DIALED, app):
            return False
        if ivrs is None or _value(block, b"\nExten: ") not in SPECIAL_EXTENS:
            return True
        return _value(block, b"\nContext: ") in ivrs

    def newstate(block: bytes) -> bool:
        i = block.find(b"\nChannelState: ")
        return i >= 0 and block.startswith(_STATE_UP, i + 15)

    checks = {b"Event: Newexten": newexten, b"Event: Newstate": newstate}
    #: the first line of a message (with its CR, or without for bare-LF input) -> its rule
    #: (True: always wanted; VarSet: the marker of the inline check below)
    rules: dict[bytes, bool | bytes | Callable[[bytes], bool]] = {
        line + cr: _VARSET if line == _VARSET else checks.get(line, True)
        for line in EVENTS
        for cr in (b"\r", b"")
    }

    def want(block: bytes) -> bool:
        rule = rules.get(block[: block.find(b"\n")])
        if rule is _VARSET:
            # the Variable line is the event's own, after the channel snapshot: from the end
            i = block.rfind(b"\nVariable: ")
            if i < 0:
                return True
            name = block[i + 11 : block.find(b"\n", i + 11)]
            return name in names or name.startswith(b"__")  # "__": inherited, always
        if rule is None:
            return not block.startswith(b"Event: ")  # responses, list items of actions: the caller's
        return rule is True or rule(block)  # type: ignore[operator]

    return want


def coarse_filter(needs: Needs | None = None) -> Callable[[bytes], object]:
    """A first pass of :func:`early_filter` in C: one regex match per block, no Python.

    It never refuses a block the early filter wants (property-tested on every fixture
    block and on altered ones) and refuses what is sure not to be wanted: events no rule
    reads, and VarSets of other variables (half of what a PBX sends). What it lets
    through the early filter still decides (Newexten and Newstate are left to it: a
    forward search in a regex costs more than the filter's own). It looks at the block
    with or without its ending empty line.
    """
    needs = needs or Needs()
    names = b"|".join(re.escape(v) for v in sorted({*VARIABLES, *needs.variables}))
    events = b"|".join(sorted(re.escape(e.removeprefix(b"Event: ")) for e in EVENTS if e != _VARSET))
    return re.compile(
        rb"(?!Event: )"  # responses, list items, the banner: not events
        rb"|Event: (?:" + events + rb")\r?\n"
        # a VarSet: the last Variable line (atomic: never an earlier one) names a wanted
        # variable (or an inherited "__" one), or there is no Variable line at all
        rb"|Event: VarSet\r?(?=\n)(?:(?>(?s:.*)\nVariable: )(?:__|_?(?:" + names + rb")\r?(?:\n|\Z))"
        rb"|(?!(?s:.*)\nVariable: ))"
    ).match


_FILTERS: dict[Needs, Callable[[bytes], bool]] = {}


def wanted(block: bytes, needs: Needs | None = None) -> bool:
    """False only for messages no translator rule needs (responses are always wanted);
    ``needs``: what the configuration adds (none: the fixed rules only)."""
    needs = needs or Needs()
    want = _FILTERS.get(needs)
    if want is None:
        want = _FILTERS[needs] = early_filter(needs)
    return want(block)


def eventfilters(config: Config) -> list[str]:
    """manager.conf lines that make Asterisk itself drop what :func:`wanted` would drop.

    Asterisk's advanced event filters (Asterisk 21+, and 20.x/18.x certified builds
    that have them): with include filters only, every other event is dropped before it
    is even formatted for the bridge's session. Action responses and the list events
    they carry (CoreShowChannels for the resync) are not filtered by Asterisk. The
    bridge keeps its own filter too, so the lines are an optimisation, never required.
    """
    lines = ["; ami-bridge: only the events the bridge reads (put these in the bridge user's section)"]
    special = {name.removeprefix(b"Event: ").decode() for name in _CHECKED}
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
