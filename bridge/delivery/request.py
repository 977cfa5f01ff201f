"""How one event becomes one HTTP request for one subscription (pure).

GET puts the fields in the query string, merged after the URL's own query (the spec's
``?myid=175`` stays first); POST sends them as an ``application/x-www-form-urlencoded``
body. Values are strings, ints in decimal. Each request carries an idempotency key
(the same for every retry of a delivery); a POST also carries it as Standard Webhooks'
``webhook-id``, with ``webhook-timestamp`` (this attempt's unix seconds).

Signatures, one per secret valid now (two while a rotation overlaps):

* a POST with ``whsec_<base64>`` secrets: Standard Webhooks,
  ``webhook-signature: v1,<base64 hmac_sha256(key, "<webhook-id>.<timestamp>.<body>")>``
  (space-separated), the key being the base64-decoded part of the secret;
* a GET (any secret), and a POST with a plain (not ``whsec_``) secret: ours,

      X-Bridge-Signature: t=<unix seconds>,v1=<hex hmac_sha256(secret, "<t>.<METHOD>.<url>.<body>")>[,v1=...]

  where ``secret`` is the secret as configured (UTF-8, ``whsec_`` included), ``url`` the
  full request URL (its query included: a GET's fields are signed) and ``body`` the raw
  body (empty for GET). A receiver recomputes it and compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit

IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_HEADER = "X-Bridge-Signature"
#: Standard Webhooks (https://www.standardwebhooks.com/), on POST
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
#: a Standard Webhooks secret: this prefix, then the key in base64
WHSEC = "whsec_"
#: the key lengths (bytes) a ``whsec_`` secret may hold (Standard Webhooks: 24 to 64)
WHSEC_BYTES = (24, 64)


def whsec_problem(secret: str) -> str | None:
    """Why a ``whsec_`` secret cannot be used (None: it can, or it is a plain secret)."""
    if not secret.startswith(WHSEC):
        return None
    try:
        key = base64.b64decode(secret[len(WHSEC) :], validate=True)
    except (binascii.Error, ValueError):
        return "the part after 'whsec_' is not base64"
    low, high = WHSEC_BYTES
    if not low <= len(key) <= high:
        return f"the key after 'whsec_' is {len(key)} bytes; it must be {low} to {high}"
    return None


@lru_cache(maxsize=256)
def _whsec_key(secret: str) -> bytes:
    return base64.b64decode(secret[len(WHSEC) :])


def new_whsec() -> str:
    """A new random Standard Webhooks secret (32 bytes)."""
    return WHSEC + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    method: str
    url: str
    body: bytes
    headers: dict[str, str]


def encode_fields(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in event.items() if v is not None and v != ""]


#: what ``quote_plus`` leaves as it is
_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")
#: a whole joined body whose quoting is :data:`_REPLACED`: the characters ``quote_plus``
#: leaves alone, those it replaces there, and the separators "&" and "="
_FAST = re.compile(r"[A-Za-z0-9_.~*@+ &=-]*")
#: what ``quote_plus`` makes of the characters common in events besides the safe ones
#: (extension names "xxx*yyy@domain", numbers "+7...", names with spaces), in an order
#: that never replaces a replacement ("+" before " " becomes "+")
_REPLACED = (("+", "%2B"), (" ", "+"), ("*", "%2A"), ("@", "%40"))


@lru_cache(maxsize=4096)
def _quote(value: str) -> str:
    return quote_plus(value)


def urlencode(fields: list[tuple[str, str]]) -> str:
    """``urllib.parse.urlencode`` of string pairs, the same bytes, faster."""
    return _joined([f"{k}={v}" for k, v in fields]) or _quoted(fields)


def form_body(event: dict[str, Any]) -> str:
    """``urlencode(encode_fields(event))``, without making the pairs first."""
    return _joined([f"{k}={v}" for k, v in event.items() if v is not None and v != ""]) or _quoted(
        encode_fields(event)
    )


def _joined(parts: list[str]) -> str | None:
    """``"&".join(parts)``, quoted as a whole, when no part holds a character that quoting
    changes other than those of :data:`_REPLACED`, nor a second "=", nor an "&" (the
    counts show it); None when some part needs quoting field by field (or there is none)."""
    text = "&".join(parts)
    n = len(parts)
    if not (text.isascii() and _FAST.fullmatch(text) and text.count("=") == n and text.count("&") == n - 1):
        return None
    for char, quoted in _REPLACED:
        if char in text:
            text = text.replace(char, quoted)
    return text


def _quoted(fields: list[tuple[str, str]]) -> str:
    # values that need no quoting (most) are not quoted, and those that do repeat (names)
    return "&".join(f"{_plain(k)}={_plain(v)}" for k, v in fields)


def _plain(text: str, safe: Callable[[str], object] = _SAFE.fullmatch) -> str:
    # ASCII letters and digits (names, numbers: most values) first, without a regex
    return text if (text.isascii() and text.isalnum()) or safe(text) else _quote(text)


@lru_cache(maxsize=1024)
def _split(url: str) -> tuple[str, str, str, tuple[tuple[str, str], ...]]:
    """A subscription URL's scheme, netloc, path and query fields (parsed once per URL)."""
    parts = urlsplit(url)
    return (
        parts.scheme,
        parts.netloc,
        parts.path or "/",
        tuple(parse_qsl(parts.query, keep_blank_values=True)),
    )


def build_request(method: str, url: str, event: dict[str, Any], idempotency_key: str,
                  secret: str | Sequence[str] | None = None,
                  now: int | None = None) -> WebhookRequest:  # fmt: skip
    """The request for one delivery, signed with ``secret`` (or each of several: a
    rotation); ``now`` (unix seconds) is needed for POST and to sign."""
    headers = {IDEMPOTENCY_HEADER: idempotency_key, "User-Agent": "ami-bridge"}
    if method == "GET":
        scheme, netloc, path, own = _split(url)
        query = urlencode([*own, *encode_fields(event)])
        full = urlunsplit((scheme, netloc, path, query, ""))
        body = b""
    else:
        full = url
        body = form_body(event).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        if now is not None:
            headers[WEBHOOK_ID] = idempotency_key
            headers[WEBHOOK_TIMESTAMP] = str(now)
    keys = [s for s in ([secret] if isinstance(secret, str) else secret or ()) if s]
    if keys:
        if now is None:
            raise ValueError("signing needs the current time")
        standard = [s for s in keys if s.startswith(WHSEC)] if method != "GET" else []
        if standard:
            signed = f"{idempotency_key}.{now}.".encode() + body
            headers[WEBHOOK_SIGNATURE] = " ".join(
                "v1," + base64.b64encode(hmac.new(_whsec_key(s), signed, hashlib.sha256).digest()).decode()
                for s in standard
            )
        ours = [s for s in keys if s not in standard]
        if ours:
            signed = f"{now}.{method}.{full}.".encode() + body
            digests = (hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in ours)
            headers[SIGNATURE_HEADER] = f"t={now}," + ",".join(f"v1={d}" for d in digests)
    return WebhookRequest(method, full, body, headers)


def verify_signature(secret: str, header: str, method: str, url: str, body: bytes) -> bool:
    """What a receiver does with :data:`SIGNATURE_HEADER` (also used by our tests): true
    when one of its ``v1`` entries is the HMAC of ``secret``."""
    pairs = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in pairs if k == "t"]
    if len(stamps) != 1:
        return False
    signed = f"{stamps[0]}.{method}.{url}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in pairs if k == "v1")
