"""The pure AMI framer and parser: exact framing, multimaps, bad input reported."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.ami.message import Framer, parse, split_stream, unescape_c
from tests.conftest import fixture_paths

STREAM = (
    b"Asterisk Call Manager/9.0.0\r\n"
    b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
    b"Event: Newchannel\r\nChannel: PJSIP/101-00000000\r\nChanVariable: TAG=a\r\n"
    b"ChanVariable: DID=\r\n\r\n"
    b"Event: VarSet\nVariable: X\nValue: M\xc3\xbcller\n\n"
    b"Event: Hangup\r\nAccountCode: \r\n\r\n"
)


def frame_in_chunks(data: bytes, sizes: list[int], fast: bool = True) -> tuple[list[bytes], bytes | None]:
    framer = Framer(fast=fast)
    blocks: list[bytes] = []
    i = 0
    for size in sizes:
        blocks += framer.feed(data[i : i + size])
        i += size
    blocks += framer.feed(data[i:])
    return blocks, framer.close()


def test_whole_stream_is_cut_into_blocks_that_join_back_exactly() -> None:
    """Blocks (banner included) concatenate to the input, byte for byte."""
    blocks, tail = split_stream(STREAM)
    assert tail is None
    assert b"".join(blocks) == STREAM
    assert [parse(b).event for b in blocks[2:]] == ["Newchannel", "VarSet", "Hangup"]


@pytest.mark.parametrize("seed", range(25))
def test_random_chunks_give_the_same_blocks(seed: int) -> None:
    """Feeding the stream in random chunks yields the same blocks as feeding it whole."""
    rng = random.Random(seed)
    sizes = [rng.randint(1, 9) for _ in range(len(STREAM))]
    assert frame_in_chunks(STREAM, sizes) == split_stream(STREAM)


def test_byte_by_byte_keeps_utf8_split_across_reads() -> None:
    """A multi-byte character split between two reads survives (panoramisk loses it)."""
    blocks, _ = frame_in_chunks(STREAM, [1] * len(STREAM))
    assert parse(blocks[3]).get("Value") == "Müller"


def test_repeated_keys_form_a_multimap() -> None:
    """ChanVariable repeats; every value is kept and variables() maps them."""
    msg = parse(split_stream(STREAM)[0][2])
    assert msg.get_all("ChanVariable") == ["TAG=a", "DID="]
    assert msg.variables() == {"TAG": "a", "DID": ""}


def test_empty_trailing_value_and_missing_space_are_kept() -> None:
    """'AccountCode: ' keeps its empty value and 'Key:value' parses (both lost by panoramisk)."""
    assert parse(b"Event: Hangup\r\nAccountCode: \r\n\r\n").get("AccountCode") == ""
    assert parse(b"Event: X\r\nKey:value\r\n\r\n").get("Key") == "value"


def test_garbage_lines_are_reported_not_raised() -> None:
    """Lines that are not headers land in problems; the rest of the message survives."""
    msg = parse(b"Event: Newstate\r\nthis is not a header\r\n: no key\r\nChannel: X\r\n\r\n")
    assert msg.event == "Newstate"
    assert msg.get("Channel") == "X"
    assert len(msg.problems) == 2
    assert "line 2" in msg.problems[0]


def test_invalid_utf8_is_replaced() -> None:
    """Undecodable bytes never raise."""
    assert parse(b"Event: X\r\nName: \xff\xfe\r\n\r\n").get("Name") == "\ufffd\ufffd"


def test_truncated_tail_is_handed_out_on_close() -> None:
    """A last block without its empty line is returned by close(), not lost or raised."""
    blocks, tail = split_stream(STREAM + b"Event: Hangup\r\nChannel: PJ")
    assert b"".join(blocks) == STREAM
    assert tail == b"Event: Hangup\r\nChannel: PJ"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (r"Anna \"Boss\"", 'Anna "Boss"'),
        (r"a\\b", "a\\b"),
        (r"tab\there", "tab\there"),
        (r"unknown \q stays", r"unknown \q stays"),
        ("trailing \\", "trailing \\"),
    ],
)
def test_c_escapes_are_undone(raw: str, value: str) -> None:
    """Snapshot values are C-escaped by Asterisk; the parser undoes exactly those escapes."""
    assert unescape_c(raw) == value
    assert parse(f"Event: Newchannel\r\nCallerIDName: {raw}\r\n\r\n".encode()).get("CallerIDName") == value


def test_userevent_payload_is_not_unescaped() -> None:
    """UserEvent payloads are sent raw, so backslashes in them stay."""
    msg = parse(b"Event: UserEvent\r\nBody: a\\nb\r\n\r\n")
    assert msg.get("Body") == "a\\nb"


@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
def test_fixture_framing_is_chunk_independent(path: object) -> None:
    """Each recorded stream frames the same whole, line by line and in random chunks."""
    from pathlib import Path

    assert isinstance(path, Path)
    data = path.read_bytes()
    whole = split_stream(data)
    assert b"".join(whole[0]) + (whole[1] or b"") == data
    lines = data.splitlines(keepends=True)
    assert frame_in_chunks(data, [len(x) for x in lines]) == whole
    rng = random.Random(path.stem)
    assert frame_in_chunks(data, [rng.randint(1, 700) for _ in range(len(data) // 300 + 1)]) == whole


_PIECES = [b"A", b"Key: v", b":", b" ", b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\n\n", b"Event: X\r\n",
           b"Asterisk Call Manager/1.0\r\n"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40), st.lists(st.integers(1, 12), max_size=20))
def test_fast_split_frames_exactly_like_the_reference_path(pieces: list[bytes], cuts: list[int]) -> None:
    """The C split taken for ordinary input cuts every stream, however odd and however
    chunked, exactly where the byte-by-byte reference path does."""
    data = b"".join(pieces)
    assert frame_in_chunks(data, cuts) == frame_in_chunks(data, cuts, fast=False)


_KEYS = ["Event", "Uniqueid", "ChanVariable", "DestChanVariable", "Key", "K"]
_VALUES = ["", "x", "a=b", "Key: y", "\\\\n", "ÿ", " lead", "v:w", "a\rb"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_KEYS), st.sampled_from(_VALUES)), min_size=1, max_size=12),
    st.sampled_from(["\r\n", "\n"]),
    st.booleans(),
    st.lists(st.tuples(st.sampled_from(_KEYS), st.sampled_from(_VALUES)), max_size=12),
)
def test_lookups_on_the_text_agree_with_the_full_parse(
    headers: list[tuple[str, str]], eol: str, no_space: bool, others: list[tuple[str, str]]
) -> None:
    """get / get_all / variables found on the raw text give what the full multimap says,
    whatever the order, repetition, line ends and values (a key on the first line too)."""
    sep = ":" if no_space else ": "
    text = "".join(f"{k}{sep}{v}{eol}" for k, v in headers) + eol
    other_text = "".join(f"{k}{sep}{v}{eol}" for k, v in others) + eol
    lazy, full = parse(text), parse(text)
    full.pairs  # noqa: B018 - builds the multimap, which lookups then use
    for key in [*_KEYS, "Absent"]:
        assert lazy.get(key) == full.first.get(key)
        assert parse(text).get_all(key) == [v for k, v in full.pairs if k == key]
        assert parse(text).unchanged(key, full.span(key))
        for other in (other_text, text + "ChanVariable: extra\r\n"):
            seen = parse(other).span(key)
            assert parse(text).unchanged(key, seen) is (seen == full.span(key))
    assert parse(text).variables() == full.variables()
    assert lazy.event == parse(text).event == full.first.get("Event")  # the first line's, or get's


def _keep_vs(block: bytes) -> bool:
    """A keep predicate for the tests: VarSets out (seen with or without the empty line)."""
    return not block.lstrip(b"\r\n").startswith(b"Event: VarSet")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*_PIECES, b"Event: VarSet\r\n", b"Event: VarSet\n"]), max_size=40),
       st.lists(st.integers(1, 12), max_size=20), st.booleans())  # fmt: skip
def test_a_keep_predicate_only_leaves_out_what_it_refuses(
    pieces: list[bytes], cuts: list[int], fast: bool
) -> None:
    """feed(data, keep) gives exactly the blocks feed(data) gives that keep accepts (the
    banner always), in order, on both paths, however the input is cut."""
    data = b"".join(pieces)
    blocks, tail = frame_in_chunks(data, cuts, fast=fast)
    framer = Framer(fast=fast)
    kept: list[bytes] = []
    i = 0
    for size in cuts:
        kept += framer.feed(data[i : i + size], _keep_vs)
        i += size
    kept += framer.feed(data[i:], _keep_vs)
    assert kept == [b for b in blocks if _keep_vs(b) or b.startswith(b"Asterisk Call Manager/")]
    assert framer.close() == tail
