"""Early filter: which raw AMI messages the translator can use, decided on bytes.

VarSet and Newexten are most of an AMI stream; most of them, and many other events
(RTCP reports, device states, connected-line updates...), no translator rule reads. A
bridge on a busy PBX spends its time parsing them. :func:`wanted` looks at the first
line (and, for VarSet, the variable name) without decoding the message; everything it
refuses is still framed (and recorded, for ``ami-bridge record``) but never parsed.
The golden tests replay every fixture through this filter, so a rule that needs an
event this list drops shows up as a diff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.config import Config

#: events some translator rule reads
EVENTS = frozenset(
    b"Event: " + name.encode()
    for name in (
        "Newchannel", "NewCallerid", "Newexten", "Newstate", "VarSet", "DialBegin", "DialEnd",
        "BridgeEnter", "BridgeLeave", "Hangup", "QueueCallerJoin", "QueueCallerAbandon", "AgentCalled",
        "AgentConnect", "UserEvent", "OriginateResponse", "BlindTransfer", "Shutdown", "FullyBooted",
    )
)  # fmt: skip
#: VarSet variables some rule reads (plus the configured channel variables, set with __)
VARIABLES = frozenset({b"DIALSTATUS", b"MIXMONITOR_FILENAME", b"VM_MESSAGEFILE", b"VMSTATUS"})


def configured_variables(config: Config) -> frozenset[bytes]:
    """The channel variable names a configuration makes the translator read."""
    return frozenset(name.encode() for name in config.variables.model_dump().values())


def wanted(block: bytes, extra_variables: frozenset[bytes] = frozenset()) -> bool:
    """False only for messages no translator rule needs (responses are always wanted)."""
    eol = block.find(b"\n")
    first = block[: eol - 1 if eol > 0 and block[eol - 1] == 13 else eol] if eol >= 0 else block
    if not first.startswith(b"Event: "):
        return True  # responses, list items of actions: the caller's business
    if first not in EVENTS:
        return False
    if first == b"Event: VarSet":
        i = block.find(b"\nVariable: ")
        if i < 0:
            return True
        i += 11
        end = block.find(b"\n", i)
        name = block[i:end].rstrip(b"\r")
        if name.startswith(b"__"):
            return True  # inherited: the configured channel variables are set so
        return name.lstrip(b"_") in VARIABLES or name in extra_variables
    return True
