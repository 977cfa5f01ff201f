"""How the parties of a call are written on the wire: who is an extension, and by which number.

Real Telphin writes the PBX's own extensions as **extended numbers** ``client*short``
(the extension's name without ``@domain``: ``000*101``) wherever they stand in
``CallerIDNum`` or ``CalledNumber``, and external numbers as received; consumers split
these fields on ``*`` to find the extension. A party is an extension because of what it
*is* (a configured phone's channel, a number the PBX routes to an extension), never
because an outside caller's number happens to look like a short number: numbers that
came in through a trunk are always external.

Pure: no I/O, used by the translator only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only
    from bridge.config import Config, Extension

#: CallFlow values, lower case as Telphin sends them
IN, OUT = "in", "out"


@dataclass(frozen=True, slots=True)
class Party:
    """One side of a call as events show it: number, name (may be empty), extension if any."""

    num: str
    name: str
    ext: Extension | None

    def caller_fields(self, via: Extension | None = None) -> dict[str, object]:
        """CallerIDNum/Name and CallerExtension(ID); ``via`` (an IVR or queue the call came
        through) stands in the extension fields, as in Telphin's IVR-routed dial-in."""
        ext = via or self.ext
        fields: dict[str, object] = {"CallerIDNum": self.num, "CallerIDName": self.name or self.num}
        if ext is not None:
            fields["CallerExtension"] = ext.name
            fields["CallerExtensionID"] = ext.id
        return fields


class Directory:
    """The PBX's extensions and trunks, and how their numbers are written."""

    def __init__(self, config: Config) -> None:
        phones = [e for e in config.extensions if e.type == "phone" and e.device]
        #: phones by device, as their channels name it (``PJSIP/101``, ``SIP/150010001``)
        self.phones: dict[str, Extension] = {e.device: e for e in phones if e.device}
        #: phones by the device's bare name (``101``), as dialplan variables, queue
        #: members behind Local channels and SIP MESSAGE senders name them
        self._named: dict[str, Extension] = {}
        for e in phones:
            self._named.setdefault((e.device or "").split("/", 1)[1], e)
        #: every extension by the short number the PBX routes to it (what phones dial)
        self.by_number: dict[str, Extension] = {e.short: e for e in config.extensions}
        #: phones by short number: an internal caller id that names a phone
        self.phones_by_number: dict[str, Extension] = {e.short: e for e in phones}
        self.trunks = set(config.trunk_devices)

    def named(self, name: str | None) -> Extension | None:
        """The phone a bare device name (``101``) or a device (``SIP/101``) means."""
        if not name:
            return None
        return self.phones.get(name) or self._named.get(name)

    def member(self, interface: str) -> Extension | None:
        """The phone a queue member interface reaches: ``PJSIP/102``, ``SIP/150010001``,
        or behind a Local channel ``Local/104@from-queue/n`` (by the number dialed)."""
        tech, _, rest = interface.partition("/")
        if tech == "Local":
            return self._named.get(rest.split("@", 1)[0]) or self.phones_by_number.get(rest.split("@", 1)[0])
        return self.phones.get(interface) or self._named.get(rest)

    def dialed(self, number: str | None) -> str | None:
        """A number dialed inside the PBX: an extension's extended number, else as dialed."""
        if not number:
            return number
        ext = self.by_number.get(number)
        return ext.extended if ext is not None else number

    def internal(self, num: str, name: str) -> Party:
        """A caller id seen on an internal (non-trunk) channel: a phone's if it is one's number."""
        ext = self.phones_by_number.get(num)
        if ext is not None:
            return Party(ext.extended, name, ext)
        return Party(num, name, None)

    def phone(self, ext: Extension, name: str = "") -> Party:
        """A configured phone (or any extension) as a party: its extended number."""
        return Party(ext.extended, name, ext)
