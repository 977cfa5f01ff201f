"""Building webhook requests: GET query merge, POST form body, idempotency key, signature."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit
from urllib.parse import urlencode as stdlib_urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.delivery.request import (
    SIGNATURE_HEADER,
    build_request,
    encode_fields,
    form_body,
    urlencode,
    verify_signature,
)

EVENT = {"EventType": "dial-out", "CallID": "c1", "CallerIDName": "Анна & Co", "EventTime": 1766736711480097,
         "Duration": 0}  # fmt: skip


def test_get_keeps_the_urls_own_query_first() -> None:
    """GET: the subscription URL's ?myid=175 stays, the fields follow in the query string."""
    req = build_request("GET", "https://somehost.com/fordel/show.php?myid=175", EVENT, "k1")
    parts = urlsplit(req.url)
    assert parts.path == "/fordel/show.php"
    pairs = parse_qsl(parts.query)
    assert pairs[0] == ("myid", "175")
    assert dict(pairs[1:]) == {"EventType": "dial-out", "CallID": "c1", "CallerIDName": "Анна & Co",
                               "EventTime": "1766736711480097", "Duration": "0"}  # fmt: skip
    assert req.body == b"" and "Content-Type" not in req.headers


def test_post_sends_a_form_body() -> None:
    """POST: the fields are an application/x-www-form-urlencoded body; the URL is unchanged."""
    req = build_request("POST", "http://crm.example/hook?x=1", EVENT, "k1")
    assert req.url == "http://crm.example/hook?x=1"
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(req.body.decode()))["CallerIDName"] == "Анна & Co"


def test_idempotency_key_and_signature_verify() -> None:
    """The key is sent as given; the signature verifies with the secret and fails without it."""
    req = build_request(
        "POST", "http://crm.example/hook", EVENT, "delivery-42", secret="s3cret", now=1700000000
    )
    assert req.headers["Idempotency-Key"] == "delivery-42"
    sig = req.headers[SIGNATURE_HEADER]
    assert sig.startswith("t=1700000000,v1=")
    assert verify_signature("s3cret", sig, "POST", req.url, req.body)
    assert not verify_signature("wrong", sig, "POST", req.url, req.body)
    assert not verify_signature("s3cret", sig, "POST", req.url, req.body + b"x")
    assert SIGNATURE_HEADER not in build_request("GET", "http://h/", EVENT, "k").headers


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=24)), max_size=8))
def test_form_encoding_is_byte_for_byte_the_stdlib_one(fields: list[tuple[str, str]]) -> None:
    """The fast encoder gives exactly what urllib.parse.urlencode gives (any text: Cyrillic
    names, spaces, '+', '&', '=', control characters)."""
    assert urlencode(fields) == stdlib_urlencode(fields)


#: the characters the fast path lets through, and a few it must not ("%", "/", Cyrillic)
_NEAR_SAFE = st.text(alphabet="aZ09_.~-*@+ &=%/\u0430", max_size=16)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(_NEAR_SAFE, _NEAR_SAFE), max_size=8))
def test_form_encoding_near_the_fast_path_is_the_stdlib_one(fields: list[tuple[str, str]]) -> None:
    """Names and values made of what the joined fast path accepts ("*" and " " replaced
    afterwards), with separators and quoted characters mixed in: still the stdlib bytes."""
    assert urlencode(fields) == stdlib_urlencode(fields)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_NEAR_SAFE, st.one_of(_NEAR_SAFE, st.integers(), st.none()), max_size=8))
def test_form_body_is_the_stdlib_encoding_of_the_events_fields(event: dict[str, object]) -> None:
    """The POST body: the event's non-empty fields, ints in decimal, as urllib encodes them."""
    assert form_body(event) == stdlib_urlencode(encode_fields(event))
    expected = [(k, str(v)) for k, v in event.items() if v is not None and v != ""]
    assert parse_qsl(form_body(event), keep_blank_values=True) == expected


def test_a_typical_event_body() -> None:
    """Extension names carry "*" and "@", numbers "+", caller names spaces: quoted as urllib does."""
    event = {"EventType": "hangup", "CallerIDName": "Anna Smith", "CallerExtension": "000*101@pbx.example",
             "CalledNumber": "+79161234567", "Duration": 0}  # fmt: skip
    assert form_body(event) == ("EventType=hangup&CallerIDName=Anna+Smith&CallerExtension=000%2A101%40pbx.example"
                                "&CalledNumber=%2B79161234567&Duration=0")  # fmt: skip
