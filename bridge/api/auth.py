"""Who a request is: static bearer tokens from the config, and OAuth2 clients.

``POST /oauth/token`` (``grant_type=client_credentials&client_id&client_secret`` as a
form, or the id and secret as HTTP Basic credentials, RFC 6749 section 4.4) answers
``{access_token, token_type: "Bearer", expires_in}``: a random token whose SHA-256 the
store keeps until it expires (so it survives restarts). Tokens are compared by their
digests: static ones against every configured token in constant time, issued ones by a
lookup of the digest. ``GET /api/ver1.0/user/`` says who the token is.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import Any

from aiohttp import web

from bridge.api.common import (
    CONFIG_KEY,
    PRINCIPAL_KEY,
    STORE_KEY,
    ApiError,
    Principal,
    now,
    route,
)
from bridge.config import ApiClient, Config, token_digest

#: (digest, principal) of every static token; (digest, client) of every OAuth client
TOKENS_KEY = web.AppKey("tokens", list)
CLIENTS_KEY = web.AppKey("clients", list)
#: what an issued token starts with (so a leaked one is recognisable in logs and scanners)
TOKEN_PREFIX = "abt_"


def setup(app: web.Application, config: Config) -> None:
    """Index the configured tokens and clients, and add the OAuth routes."""
    app[TOKENS_KEY], app[CLIENTS_KEY] = index(config)
    app.router.add_post("/oauth/token", token)
    route(app, "GET", "/user/", user)


def index(config: Config) -> tuple[list[tuple[bytes, Principal]], list[tuple[bytes, ApiClient]]]:
    """The (digest, principal) of each static token and the (digest, client) of each client."""
    tokens = [
        (
            t.digest,
            Principal(t.client_id, None if t.extensions is None else frozenset(t.extensions), "static"),
        )
        for t in config.api.tokens
    ]
    return tokens, [(c.digest, c) for c in config.api.clients]


def index_credentials(app: web.Application, config: Config) -> None:
    """Index the configured tokens and clients (what :func:`token_principal` and
    :func:`client_principal` check) on ``app``."""
    app[TOKENS_KEY], app[CLIENTS_KEY] = index(config)


def authenticate(request: web.Request) -> Principal:
    """The principal of the request's bearer token, or 401."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    presented = raw.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'")
    return token_principal(request.app, presented, now(request))


def token_principal(app: web.Application, presented: str, clock: float) -> Principal:
    """Who a token is (a static one, or one issued to a client and not expired), or 401."""
    given = token_digest(presented)
    found: Principal | None = None
    # compare against every static token, in constant time each, so timing says nothing
    for digest, principal in app[TOKENS_KEY]:
        if hmac.compare_digest(digest, given):
            found = principal
    if found is not None:
        return found
    if presented.startswith(TOKEN_PREFIX):
        issued = app[STORE_KEY].token(given)
        if issued is not None:
            client_id, expires_at = issued
            if expires_at <= clock:
                raise ApiError(
                    401, "unauthorized", "the token has expired: ask POST /oauth/token for a new one"
                )
            client = configured_client(app, client_id)
            if client is None:
                raise ApiError(401, "unauthorized", f"client {client_id!r} is no longer configured")
            exts = None if client.extensions is None else frozenset(client.extensions)
            return Principal(client_id, exts, "oauth", expires_at)
    raise ApiError(401, "unauthorized", "unknown bearer token")


def client_principal(app: web.Application, client_id: str, secret: str) -> Principal:
    """Who an OAuth client is, by its id and secret (as ``POST /oauth/token`` checks them), or 401."""
    found = _check_client(app, client_id, secret)
    if found is None:
        raise ApiError(401, "unauthorized", "unknown client_id or wrong client_secret")
    exts = None if found.extensions is None else frozenset(found.extensions)
    return Principal(found.client_id, exts, "oauth")


def _check_client(app: web.Application, client_id: str, secret: str) -> ApiClient | None:
    given = token_digest(secret)
    found: ApiClient | None = None
    for digest, client in app[CLIENTS_KEY]:  # every one, in constant time each
        if hmac.compare_digest(digest, given) and hmac.compare_digest(client.client_id, client_id):
            found = client
    return found


def configured_client(app: web.Application, client_id: str) -> ApiClient | None:
    """The configured OAuth client of that id (None: not, or no longer, configured)."""
    return next((c for _, c in app[CLIENTS_KEY] if c.client_id == client_id), None)


class OAuthError(ApiError):
    """An RFC 6749 error: ``error`` is the standard code, ``error_description`` says why."""

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.message, "status": self.code,
                "message": self.message}  # fmt: skip

    def response(self) -> web.Response:
        resp = web.json_response(self.body(), status=self.status, headers={"Cache-Control": "no-store"})
        if self.status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="ami-bridge"'
        return resp


async def _credentials(request: web.Request) -> tuple[str, str, str]:
    """(grant_type, client_id, client_secret) from the form and/or HTTP Basic."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "send a form (application/x-www-form-urlencoded): "
                         "grant_type=client_credentials&client_id=...&client_secret=...")  # fmt: skip
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError) as err:
        raise OAuthError(400, "invalid_request", f"the form cannot be read: {err}") from err
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    client_id, secret = fields.get("client_id", ""), fields.get("client_secret", "")
    scheme, _, basic = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(basic.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as err:
            raise OAuthError(
                400, "invalid_request", "the Basic credentials are not base64 of id:secret"
            ) from err
        client_id, _, secret = decoded.partition(":")
    return fields.get("grant_type", ""), client_id, secret


async def token(request: web.Request) -> web.Response:
    """``POST /oauth/token``: a client's id and secret for a bearer token."""
    grant, client_id, secret = await _credentials(request)
    if grant != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
    if not client_id or not secret:
        raise OAuthError(400, "invalid_request", "client_id and client_secret are required")
    found = _check_client(request.app, client_id, secret)
    if found is None:
        raise OAuthError(401, "invalid_client", "unknown client_id or wrong client_secret")
    ttl = request.app[CONFIG_KEY].api.token_ttl
    issued = TOKEN_PREFIX + secrets.token_urlsafe(32)
    clock = now(request)
    request.app[STORE_KEY].add_token(token_digest(issued), found.client_id, clock + ttl, clock)
    return web.json_response({"access_token": issued, "token_type": "Bearer", "expires_in": ttl},
                             headers={"Cache-Control": "no-store", "Pragma": "no-cache"})  # fmt: skip


async def user(request: web.Request) -> web.Response:
    """``GET /api/ver1.0/user/``: who the token is."""
    principal = request[PRINCIPAL_KEY]
    expires = None if principal.expires_at is None else max(0, int(principal.expires_at - now(request)))
    return web.json_response({
        "client_id": principal.client_id,
        "login": principal.client_id,
        "token_type": principal.kind,
        "extensions": None if principal.extensions is None else sorted(principal.extensions),
        "expires_in": expires,
    })  # fmt: skip
