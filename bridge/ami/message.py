"""Pure AMI framing and parsing: bytes in, header multimaps out, never an exception.

Theory of operation
-------------------
An AMI stream is a banner line (``Asterisk Call Manager/x.y.z``) followed by messages,
each a run of ``Key: Value`` lines ended by an empty line. Asterisk writes CRLF; files
edited by hand or captured by other tools may carry bare LF, so both are accepted, even
mixed. :class:`Framer` cuts a byte stream, fed in chunks of any size, into raw message
blocks (the bytes are kept exactly, so a recorder can write what it saw).
:func:`parse` turns one block into a :class:`Message`: an ordered multimap (keys repeat:
``ChanVariable``) with the first value of each key in a dict for fast lookup.

Bad input is reported, not raised: a line without a colon becomes a ``problems`` entry
of the message, undecodable bytes are replaced, a trailing block without its empty line
is handed out by :meth:`Framer.close` as truncated.

Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class Message:
    """One AMI message: its headers in order (keys may repeat) and what was wrong with it."""

    pairs: list[tuple[str, str]]
    first: dict[str, str]
    problems: list[str] = field(default_factory=list)
    truncated: bool = False

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (exact case, as Asterisk sends it)."""
        return self.first.get(key, default)

    def get_all(self, key: str) -> list[str]:
        """Every value of a repeated key, in order (``ChanVariable``)."""
        return [v for k, v in self.pairs if k == key]

    def variables(self, key: str = "ChanVariable") -> dict[str, str]:
        """``Key: NAME=value`` headers as a dict (last one wins)."""
        out: dict[str, str] = {}
        for k, v in self.pairs:
            if k == key:
                name, _, value = v.partition("=")
                out[name] = value
        return out

    @property
    def event(self) -> str | None:
        """The event name, or None for responses and other non-events."""
        return self.first.get("Event")


# A header line: a key (no colon), a colon, an optional space, the value up to CR/LF.
_HEADER = re.compile(r"^([^:\r\n]+): ?([^\r\n]*)", re.M)


def parse(block: bytes | str, *, unescape: bool = True) -> Message:
    """Parse one raw block (its lines, with or without the ending empty line)."""
    text = block.decode("utf-8", "replace") if isinstance(block, bytes) else block
    # one regex pass in C for the usual case; the slow path only names bad lines
    pairs: list[tuple[str, str]] = _HEADER.findall(text)
    problems: list[str] = []
    # a framed block is its header lines plus one empty line
    if len(pairs) != text.count("\n") - 1 and len(pairs) != _nonblank_lines(text):
        problems = _problems(text)
    # UserEvent payloads are sent raw; everything else from snapshots is C-escaped.
    if unescape and "\\" in text and "Event: UserEvent" not in text:
        pairs = [(k, unescape_c(v)) for k, v in pairs]
    # dict() keeps the last value of a repeated key; reversed, that is the first one
    first = dict(reversed(pairs))
    return Message(pairs, first, problems)


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

    __slots__ = ("_at_start", "_buf")

    def __init__(self) -> None:
        self._buf = b""
        self._at_start = True

    def feed(self, data: bytes) -> list[bytes]:
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
            out.append(buf[start:end])
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
