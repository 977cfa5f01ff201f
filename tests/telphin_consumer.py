"""A CRM integration written for Telphin, reading our webhooks the way public Telphin
consumers read Telphin's own (shared/spec/telphin-facts.md, "What real Telphin sends").

Written from that description, not from the bridge's code:

* the fields come from the GET query or the POST form alike;
* branch on ``EventType``, then on ``CallFlow == 'in'`` / ``'out'`` (anything else: the
  event is not understood and dropped);
* the extension is found by splitting ``CalledNumber`` (in) or ``CallerIDNum`` (out) on
  ``*`` (the short number after it names the extension in the client's extension list,
  which a CRM fetches by name); the other field is the other party;
* a dial-in/dial-out opens a record keyed by ``CallID`` and the extension's number (one
  extension may have several open at once: a phone rung while its follow-me rings a
  mobile); a hangup is joined to the oldest open record with its ``CallID`` and number (a
  hangup with no record, or for another extension, is dropped as "unknown call").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hangup:
    """A hangup as the CRM files it: whose call, with whom, how it ended."""

    extension_id: int
    other: str
    status: str
    duration_s: int


def user_and_client(fields: Mapping[str, str]) -> tuple[str, str] | None:
    """(the extension's own number, the other party's) by CallFlow, or None if not understood."""
    flow = fields.get("CallFlow")
    if flow == "in":
        return fields.get("CalledNumber", ""), fields.get("CallerIDNum", "")
    if flow == "out":
        return fields.get("CallerIDNum", ""), fields.get("CalledNumber", "")
    return None


@dataclass
class Consumer:
    """The CRM side. ``extensions``: the client's extension list, short number -> id (what
    ``GET /client/@me/extension/?name=`` tells a Telphin integration)."""

    extensions: Mapping[str, int]
    #: open records: (CallID, user number) -> extension id of each, oldest first
    calls: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    hangups: list[Hangup] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)

    def extension_of(self, number: str) -> int | None:
        if "*" not in number:
            return None
        return self.extensions.get(number.split("*", 1)[1])

    def receive(self, fields: Mapping[str, str]) -> None:
        """One webhook's fields (query string or form body, already decoded)."""
        parties = user_and_client(fields)
        call_id = fields.get("CallID", "")
        if parties is None or not call_id:
            self.dropped.append(dict(fields))
            return
        user, client = parties
        ext = self.extension_of(user)
        kind = fields.get("EventType")
        if kind in ("dial-in", "dial-out"):
            if ext is None:
                self.dropped.append(dict(fields))
            else:
                self.calls.setdefault((call_id, user), []).append(ext)
        elif kind == "hangup":
            records = self.calls.get((call_id, user))
            if not records:
                self.dropped.append(dict(fields))
                return
            ext_id = records.pop(0)
            if not records:
                del self.calls[(call_id, user)]
            duration = int(fields.get("Duration", "0") or 0) // 1_000_000
            self.hangups.append(Hangup(ext_id, client, fields.get("CallStatus", ""), duration))


def wire_problems(
    ext_id: int, event: Mapping[str, object], extensions: Mapping[int, tuple[str, str]]
) -> list[str]:
    """What in one event a Telphin consumer would misread. ``extensions``: id -> (extended
    number ``client*short``, name ``client*short@domain``) of every configured extension.

    The rules (telphin-facts.md): CallFlow is ``in`` or ``out``; the extension an event is
    for is the one its CalledNumber (in) or CallerIDNum (out) names; a number with ``*`` is
    some extension's extended number, and no number is a bare short number of one;
    CallerIDName is there whenever CallerIDNum is; Caller/CalledExtension agree with their IDs.
    """
    problems = []
    flow = event.get("CallFlow")
    if flow not in ("in", "out"):
        problems.append(f"CallFlow {flow!r}")
    own = event.get("CalledNumber" if flow == "in" else "CallerIDNum")
    if own != extensions[ext_id][0]:
        problems.append(f"{flow} event for {extensions[ext_id][0]} names {own!r}")
    extended = {num for num, _ in extensions.values()}
    shorts = {num.rsplit("*", 1)[-1] for num in extended}
    for key in ("CallerIDNum", "CalledNumber", "RemoteNumber"):
        value = event.get(key)
        if isinstance(value, str) and (("*" in value and value not in extended) or value in shorts):
            problems.append(f"{key}={value!r} is neither an extended number nor an external one")
    if (
        "CallerIDNum" in event
        and not event.get("CallerIDName")
        and event["EventType"] not in ("message-in", "message-out")
    ):
        problems.append("CallerIDName missing")
    for side in ("Caller", "Called"):
        if (f"{side}ExtensionID" in event) != (f"{side}Extension" in event):
            problems.append(f"{side}Extension and {side}ExtensionID come apart")
        elif f"{side}ExtensionID" in event:
            ext = extensions.get(event[f"{side}ExtensionID"])  # type: ignore[call-overload]
            if ext is None or ext[1] != event[f"{side}Extension"]:
                problems.append(f"{side}Extension does not name {side}ExtensionID")
    return problems
