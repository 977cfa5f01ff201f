"""Pure AMI framing and parsing: bytes in, header multimaps out, never an exception.

Theory of operation
-------------------
An AMI stream is a banner line (``Asterisk Call Manager/x.y.z``) followed by messages,
each a run of ``Key: Value`` lines ended by an empty line. Asterisk writes CRLF; files
edited by hand or captured by other tools may carry bare LF, so both are accepted, even
mixed. :class:`Framer` cuts a byte stream, fed in chunks of any size, into raw message
blocks (the bytes are kept exactly, so a recorder can write what it saw).
:func:`parse` turns one block into a :class:`Message`: an ordered multimap (keys repeat:
``ChanVariable``). Parsing is lazy: the decoded text is kept and a header is found in it
when asked for (a consumer reads a handful of the ~25 headers); the whole multimap is
built only if someone wants it. When the input is plain CRLF (what Asterisk writes) the
framer cuts it with one C-level split; odd input takes a byte-by-byte reference path,
and a property test holds the two to the same cuts.

Bad input is reported, not raised: a line without a colon becomes a ``problems`` entry
of the message, undecodable bytes are replaced, a trailing block without its empty line
is handed out by :meth:`Framer.close` as truncated.

Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import overload

BANNER_PREFIX = b"Asterisk Call Manager/"

# Asterisk escapes snapshot values with ast_escape_c(); undo exactly those escapes.
_C_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


def unescape_c(value: str) -> str:
    """Undo Asterisk's C escaping (``\\"`` -> ``"``); unknown escapes stay as they are."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "\\" and i + 1 < n and value[i + 1] in _C_ESCAPES:
            out.append(_C_ESCAPES[value[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class _Probes(dict[str, str]):
    """``"\\nKey:"`` for each key, what finds a header at a line start (made once per key)."""

    def __missing__(self, key: str) -> str:
        probe = self[key] = "\n" + key + ":"
        return probe


_PROBES = _Probes()


class Message:
    """One AMI message: its headers in order (keys may repeat) and what was wrong with it.

    A parsed block keeps its text and answers :meth:`get` and :meth:`get_all` by searching
    it (a substring search in C per key): the translator reads a handful of the ~25
    headers of a message, so building every pair would cost more than all its lookups.
    ``pairs``, ``first`` and ``problems`` are built on first use. A message can also be
    made from pairs directly (``Message(pairs, first)``).
    """

    __slots__ = ("_event", "_first", "_pairs", "_problems", "_text", "_unescape", "truncated")

    def __init__(
        self,
        pairs: list[tuple[str, str]] | None = None,
        first: dict[str, str] | None = None,
        problems: list[str] | None = None,
        truncated: bool = False,
        *,
        text: str | None = None,
        unescape: bool = False,
        event: str | None = None,
    ) -> None:
        if text is None and pairs is None:
            pairs = []
        if pairs is not None and first is None:
            first = dict(reversed(pairs))
        self._pairs = pairs
        self._first = first
        self._problems = problems
        #: the block's text after a "\n", so that every header line starts with "\n"
        self._text = None if text is None else "\n" + text
        self._unescape = unescape
        #: the event name when the caller knew it (:func:`parse` reads the first line)
        self._event = event
        self.truncated = truncated

    # ---- lazy views ------------------------------------------------------------------

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every header in order, as ``(key, value)``."""
        if self._pairs is None:
            assert self._text is not None
            pairs: list[tuple[str, str]] = _HEADER.findall(self._text)
            if self._unescape:
                pairs = [(k, unescape_c(v)) for k, v in pairs]
            self._pairs = pairs
        return self._pairs

    @property
    def first(self) -> dict[str, str]:
        """The first value of each key."""
        if self._first is None:
            # dict() keeps the last value of a repeated key; reversed, that is the first one
            self._first = dict(reversed(self.pairs))
        return self._first

    @property
    def problems(self) -> list[str]:
        """Lines that are not ``Key: Value`` headers (empty for a well-formed message)."""
        if self._problems is None:
            self._problems = []
            if self._text is not None:
                text = self._text[1:]
                # a framed block is its header lines plus one empty line
                if len(self.pairs) != text.count("\n") - 1 and len(self.pairs) != _nonblank_lines(text):
                    self._problems = _problems(text)
        return self._problems

    # ---- lookups ---------------------------------------------------------------------

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: None) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (exact case, as Asterisk sends it)."""
        text = self._text
        if text is None or self._first is not None:
            return self.first.get(key, default)
        # the hot path of the whole bridge: one search in C
        probe = _PROBES[key]
        i = text.find(probe)
        if i < 0:
            return default
        i += len(probe)
        if text.startswith(" ", i):
            i += 1
        j = text.find("\n", i)
        # the CR of a CRLF line end left out at once, not by a partition
        value = text[i:] if j < 0 else text[i : j - 1] if text[j - 1] == "\r" else text[i:j]
        if "\r" in value:  # (a stray CR in a bare-LF line: the value ends there)
            value = value.partition("\r")[0]
        return unescape_c(value) if self._unescape else value

    def get_all(self, key: str, span: str | None = None) -> list[str]:
        """Every value of a repeated key, in order (``ChanVariable``); ``span``: what
        :meth:`span` returned for this key, when the caller has it already."""
        if self._text is None or self._pairs is not None:
            return [v for k, v in self.pairs if k == key]
        # the lines from the first to the last occurrence hold them all (usually in a row)
        head = key + ":"
        n = len(head)
        unescape = self._unescape
        out = []
        for line in (self.span(key) if span is None else span).split("\n"):
            if line.startswith(head):
                value = line[n + 1 :] if line.startswith(" ", n) else line[n:]
                value = value.partition("\r")[0]
                out.append(unescape_c(value) if unescape else value)
        return out

    def span(self, key: str) -> str:
        """The raw lines of ``key``, from the one before the first to the end of the last
        (``"\\nChanVariable: A=1\\r\\nChanVariable: B=\\r\\n"``); see :meth:`unchanged`."""
        text = self._text
        if text is None:
            return "".join(f"\n{key}: {v}\n" for v in self.get_all(key))
        probe = _PROBES[key]
        first = text.find(probe)
        if first < 0:
            return ""
        end = text.find("\n", text.rfind(probe) + 1)
        return text[first : end + 1 if end >= 0 else len(text)]

    def unchanged(self, key: str, seen: str) -> bool:
        """Whether this message's ``key`` lines are exactly ``seen`` (an earlier
        :meth:`span`): then their values are the same, and need not be read again."""
        text = self._text
        if text is None:
            return seen == self.span(key)
        probe = _PROBES[key]
        first = text.find(probe)
        if not seen:
            return first < 0
        # the same lines from the first occurrence on, and none after them: span(key) == seen
        return first >= 0 and text.startswith(seen, first) and text.find(probe, first + len(seen) - 1) < 0

    def variables(self, key: str = "ChanVariable") -> dict[str, str]:
        """``Key: NAME=value`` headers as a dict (last one wins)."""
        out: dict[str, str] = {}
        for v in self.get_all(key):
            name, _, value = v.partition("=")
            out[name] = value
        return out

    @property
    def event(self) -> str | None:
        """The event name, or None for responses and other non-events."""
        return self._event if self._event is not None else self.get("Event")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.pairs == other.pairs and self.problems == other.problems \
            and self.truncated == other.truncated  # fmt: skip

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Message({self.pairs!r}, problems={self.problems!r}, truncated={self.truncated})"


# A header line: a key (no colon), a colon, an optional space, the value up to CR/LF.
_HEADER = re.compile(r"^([^:\r\n]+): ?([^\r\n]*)", re.M)


def parse(block: bytes | str, *, unescape: bool = True) -> Message:
    """Parse one raw block (its lines, with or without the ending empty line).

    Cheap: the text is decoded and kept; headers are found when asked for.
    """
    text = block.decode("utf-8", "replace") if isinstance(block, bytes) else block
    # UserEvent payloads are sent raw; everything else from snapshots is C-escaped.
    escaped = unescape and "\\" in text and "Event: UserEvent" not in text
    event = None
    if text.startswith("Event: "):  # the first line, as get("Event") would read it
        eol = text.find("\n")
        event = (text[7:eol] if eol >= 0 else text[7:]).partition("\r")[0]
        if escaped and "\\" in event:
            event = None  # (an escape in an event name: left to get())
    # Message(text=text, unescape=escaped, event=event) without the argument handling: this
    # runs for every message kept, and the call with keywords was a fifth of its cost
    msg = _new_message(Message)
    msg._text, msg._unescape, msg._event = "\n" + text, escaped, event
    msg._pairs = msg._first = msg._problems = None
    msg.truncated = False
    return msg


_new_message = object.__new__


def _nonblank_lines(text: str) -> int:
    return sum(1 for line in text.split("\n") if line.strip("\r"))


def _problems(text: str) -> list[str]:
    problems = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if line and not _HEADER.match(line):
            problems.append(f"line {lineno}: not a 'Key: Value' header: {line[:80]!r}")
    return problems


class Framer:
    """Cut an AMI byte stream into raw blocks; feed it chunks of any size.

    ``feed`` returns the complete blocks found so far, each the exact bytes of one
    message including its ending empty line. A banner line is returned as its own
    block (``is_banner`` tells it apart). Leading empty lines between messages are
    kept with the next block so that the blocks joined give back the stream exactly.
    """

    __slots__ = ("_at_start", "_buf", "fast")

    def __init__(self, fast: bool = True) -> None:
        self._buf = b""
        self._at_start = True
        #: take the C split when the input allows it (False: always the reference path)
        self.fast = fast

    def feed(self, data: bytes, keep: Callable[[bytes], object] | None = None) -> list[bytes]:
        """The complete blocks in the stream so far; with ``keep``, only those it accepts
        (it sees a block with or without its ending empty line; the banner is always
        given). The blocks refused are never copied out of the stream."""
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        start = 0
        n = len(buf)
        if self._at_start and buf:
            if BANNER_PREFIX.startswith(buf[: len(BANNER_PREFIX)]) and len(buf) < len(BANNER_PREFIX):
                self._buf = buf
                return out
            self._at_start = False
            if buf.startswith(BANNER_PREFIX):
                eol = buf.find(b"\n")
                if eol < 0:
                    self._buf = buf
                    self._at_start = True
                    return out
                out.append(buf[: eol + 1])
                start = eol + 1
        if self.fast:
            rest = buf[start:] if start else buf
            # The usual case, split in C: no bare-LF empty line, and no message preceded by
            # blank lines. Then the slow path below would cut exactly at each "\n\r\n".
            if rest.find(b"\n\n") < 0:
                parts = rest.split(b"\n\r\n")
                heads = [p[:1] for p in parts]
                if b"\r" not in heads and b"\n" not in heads and (parts[0] or len(parts) == 1):
                    self._buf = parts.pop()
                    out += [p + b"\n\r\n" for p in (parts if keep is None else filter(keep, parts))]
                    return out
        while start < n:
            # skip (and keep) blank lines that precede a message
            body = start
            while body < n and buf[body] in (10, 13):
                if buf[body] == 13 and (body + 1 >= n or buf[body + 1] != 10):
                    break
                body += 1
            if body >= n:
                break
            a = buf.find(b"\n\r\n", body)
            # look for a bare-LF end only before the CRLF one: never rescan the whole buffer
            b = buf.find(b"\n\n", body, a + 2 if a >= 0 else n)
            if a < 0 and b < 0:
                break
            end = b + 2 if a < 0 or 0 <= b < a else a + 3
            block = buf[start:end]
            if keep is None or keep(block):
                out.append(block)
            start = end
        self._buf = buf[start:]
        return out

    def close(self) -> bytes | None:
        """End of stream: the trailing bytes that never got their empty line, if any."""
        rest, self._buf = self._buf, b""
        return rest if rest.strip() else None


def is_banner(block: bytes) -> bool:
    """True for the ``Asterisk Call Manager/...`` greeting line."""
    return block.startswith(BANNER_PREFIX)


def split_stream(data: bytes) -> tuple[list[bytes], bytes | None]:
    """Frame a whole recorded stream: its blocks and the truncated tail, if any."""
    framer = Framer()
    blocks = framer.feed(data)
    return blocks, framer.close()
