"""Replay recorded AMI streams through the translator: the same path the daemon uses."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bridge.ami.filter import coarse_filter, early_filter, needs
from bridge.ami.message import Framer, is_banner, parse
from bridge.config import Config
from bridge.translate import Emitted, Translator


def replay_bytes(translator: Translator, chunks: Iterable[bytes]) -> Iterator[Emitted]:
    """Frame, filter, parse and translate a byte stream given in chunks (the daemon's path)."""
    framer = Framer()
    need = needs(translator.config)
    want, coarse = early_filter(need), coarse_filter(need)
    for chunk in chunks:
        for block in framer.feed(chunk, coarse):
            if want(block) and not is_banner(block):
                yield from translator.feed(parse(block))
    tail = framer.close()
    if tail is not None:
        msg = parse(tail)
        msg.truncated = True
        translator.problems.append(f"truncated last message ignored: {tail[:60]!r}")
    yield from translator.flush()  # the stream ends: nothing more will come


def replay_files(config: Config, paths: Iterable[Path]) -> Iterator[Emitted]:
    """Translate files one after the other, with one translator (as one long stream)."""
    translator = Translator(config)
    for path in paths:
        yield from replay_bytes(translator, [path.read_bytes()])


def to_json_line(item: Emitted) -> str:
    ext_id, event = item
    doc: dict[str, Any] = {"extension_id": ext_id, "event": event}
    return json.dumps(doc, ensure_ascii=False, separators=(", ", ": "))
