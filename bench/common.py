"""Shared by the benchmarks: baselines, chunking, and interleaved timing with medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

CHUNK = 65536


def chunks(data: bytes, size: int = CHUNK) -> list[bytes]:
    """The stream as a socket would hand it over."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def baseline_multimap(parts: list[bytes]) -> int:
    """The least a parser must do: cut messages, decode, split each into (key, value) pairs."""
    data = b"".join(parts)
    n = 0
    for block in data.split(b"\r\n\r\n"):
        if block:
            [tuple(line.split(": ", 1)) for line in block.decode("utf-8", "replace").split("\r\n")]
            n += 1
    return n


def baseline_bytes(parts: list[bytes]) -> int:
    """Even less: cut messages and lines, partition bytes (no decoding, no pairs)."""
    data = b"".join(parts)
    n = 0
    for block in data.split(b"\r\n\r\n"):
        if block:
            [line.partition(b": ") for line in block.split(b"\r\n")]
            n += 1
    return n


def measure(contenders: dict[str, Callable[[], int]], runs: int) -> dict[str, tuple[float, int]]:
    """Messages/s of each contender: median of ``runs`` rounds, contenders interleaved in
    every round so that the machine's noise hits them alike."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    counts: dict[str, int] = {}
    for _ in range(runs):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            counts[name] = fn()
            rates[name].append(counts[name] / (time.perf_counter() - t0))
    return {name: (statistics.median(r), counts[name]) for name, r in rates.items()}


def table(rows: dict[str, tuple[float, int]], ratios: dict[str, str]) -> None:
    """Print messages/s and the ratio of each row to the named reference rows."""
    head = "".join(f" {'x ' + label:>16}" for label in ratios)
    print(f"{'':34} {'messages/s':>12}{head}")
    for name, (rate, _) in rows.items():
        cells = "".join(f" {rate / rows[ref][0]:16.2f}" for ref in ratios.values())
        print(f"{name:34} {rate:12,.0f}{cells}")
