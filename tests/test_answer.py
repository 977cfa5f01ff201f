"""Retry-After as receivers send it: delta-seconds or an HTTP-date."""

from __future__ import annotations

import pytest

from bridge.delivery.answer import retry_after_seconds

NOW = 1445412400.0  # Wed, 21 Oct 2015 07:26:40 GMT


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 80.0),
        ("Wed, 21 Oct 2015 07:20:00 GMT", 0.0),  # in the past: now
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: unreadable
        ("-5", None),
        ("1.5", None),
        ("²", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds
