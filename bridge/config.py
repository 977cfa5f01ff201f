"""The bridge's configuration: a YAML file validated by pydantic models.

Unknown or misspelt keys are errors; every error names its key path
(``extensions[2].endpoint``), says what is wrong and how to fix it.
:func:`load_config` is the only entry point; it raises :class:`ConfigError`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(Exception):
    """The configuration file cannot be used; the message says where and why."""


#: channel technologies as Asterisk spells them in channel names
TECHNOLOGIES = {
    t.upper(): t for t in ("PJSIP", "SIP", "IAX2", "DAHDI", "Skinny", "MGCP", "UNISTIM", "Console")
}


def device(endpoint: str) -> str:
    """A phone's or trunk's device as its channels name it, ``TECH/name``: a bare name
    is a PJSIP endpoint (``101`` -> ``PJSIP/101``), a technology is spelt as Asterisk
    does (``sip/150010001`` -> ``SIP/150010001``)."""
    tech, sep, name = endpoint.partition("/")
    if not sep:
        return f"PJSIP/{endpoint}"
    return f"{TECHNOLOGIES.get(tech.upper(), tech)}/{name}"


def dial_through(trunk: str, number: str) -> str:
    """The Dial/Originate channel that calls ``number`` through a trunk device:
    ``PJSIP/<number>@<endpoint>``, ``SIP/<peer>/<number>``, ``IAX2/<peer>/<number>``,
    ``DAHDI/<group>/<number>``."""
    tech, _, name = trunk.partition("/")
    if tech == "PJSIP":
        return f"PJSIP/{number}@{name}"
    return f"{trunk}/{number}"


def _device_ok(endpoint: str) -> str:
    """Check an ``endpoint``/``trunks`` entry: ``name`` or ``TECH/name``."""
    tech, sep, name = endpoint.partition("/")
    if not endpoint.strip() or endpoint != endpoint.strip() or any(c.isspace() for c in endpoint):
        raise ValueError(f"{endpoint!r} must be a device name without spaces, e.g. 101 or SIP/150010001")
    if sep and (not tech or not name or "/" in name):
        raise ValueError(f"{endpoint!r} must be 'name' (a PJSIP endpoint) or 'TECH/name', e.g. SIP/150010001")
    if sep and tech.upper() == "LOCAL":
        raise ValueError(f"{endpoint!r}: a Local channel is no device; name the phone's own endpoint")
    return endpoint


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: in a ``*_file`` path, the folder systemd puts a unit's ``LoadCredential=`` files in
CREDENTIALS = "${CREDENTIALS_DIRECTORY}"

#: each secret that may be read from a file: (the key in clear, the key naming its file)
SECRET_FILES = {
    "AmiConfig": ("secret", "secret_file"),
    "ApiToken": ("token", "token_file"),
    "ApiClient": ("client_secret", "client_secret_file"),
    "DeliveryConfig": ("secret", "secret_file"),
    "MqttConfig": ("password", "password_file"),
    "StoreConfig": ("password", "password_file"),
}


def read_secret(key: str, path: str, environ: dict[str, str] | None = None) -> str:
    """The secret in the file ``key`` names: its one line, without the newline ending it.

    ``${CREDENTIALS_DIRECTORY}`` in the path is the folder systemd gives a unit with
    ``LoadCredential=``. Raises ValueError naming the key, the file and the fix; the
    message never holds what the file holds.
    """
    env = os.environ if environ is None else environ
    if CREDENTIALS in path:
        creds = env.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ValueError(f"{key}: {path!r} uses {CREDENTIALS}, which is not set: systemd sets it for a "
                             "unit with LoadCredential= (see systemd/README.md); outside systemd, give the "
                             "file's own path")  # fmt: skip
        path = path.replace(CREDENTIALS, creds.rstrip("/"))
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{key}: cannot read {path!r} ({err.strerror}): make it readable by the bridge's "
                         "user (chmod 0640, group of the service), or correct the path") from err  # fmt: skip
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{key}: {path!r} is not UTF-8 text: put the secret alone in it") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ValueError(f"{key}: {path!r} is empty: put the secret in it (one line)")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{key}: {path!r} has more than one line: put the secret alone on one line")
    return text


def _secret_from_file(cls: type[BaseModel], data: Any) -> Any:
    """Before validation: the clear key filled from its ``*_file`` (exactly one of the two)."""
    clear, file = SECRET_FILES[cls.__name__]
    if not isinstance(data, dict) or data.get(file) is None:
        return data
    if data.get(clear) is not None:
        raise ValueError(f"give '{clear}' or '{file}', not both (the file is safer: see README, Security)")
    if not isinstance(data[file], str):
        raise ValueError(f"{file} must be a file's path, e.g. /etc/ami-bridge/{clear.replace('_', '-')}")
    return {**data, clear: read_secret(file, data[file])}


class AmiTls(_Strict):
    """TLS to AMI (manager.conf ``tlsenable = yes``; ``ami.port`` is then tlsbindaddr's port)."""

    enabled: bool = True
    #: the CA that signed Asterisk's tlscertfile (PEM); without it, the system's CAs
    ca_file: str | None = None
    #: check Asterisk's certificate and name; false only to try things out
    verify: bool = True
    #: a client certificate (PEM; with its key in it, or in key_file)
    cert_file: str | None = None
    key_file: str | None = None
    #: the name Asterisk's certificate is checked against (default: ami.host)
    server_hostname: str | None = None

    @model_validator(mode="after")
    def _context_ok(self) -> AmiTls:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file (the client certificate it goes with)")
        if self.enabled:
            from bridge.ami.tls import client_context

            client_context(self)  # unreadable or bad files are config errors, named by key
        return self


class AmiConfig(_Strict):
    """How to reach Asterisk's manager interface."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5038
    username: str
    secret: str = Field(repr=False)
    #: a file holding the secret (instead of ``secret``)
    secret_file: str | None = None
    tls: AmiTls | None = None
    ping_interval: Annotated[float, Field(gt=0)] = 10.0
    reconnect_min: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max: Annotated[float, Field(gt=0)] = 30.0
    #: issue 19: the Asterisk server's name in a cluster (its events, log lines, extension
    #: registry); every bridge reading the same Asterisk gives the same name
    name: str = "asterisk"

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return _secret_from_file(cls, data)

    @field_validator("name")
    @classmethod
    def _short_name(cls, value: str) -> str:
        if not _SERVER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a server name: give 1 to 32 characters of a-z, 0-9, '-' and "
                             "'_', starting with a letter or digit (e.g. pbx-1); every bridge reading the "
                             "same Asterisk takes the same name")  # fmt: skip
        return value


#: ``ami.name``: a short identifier (it goes in logs, MQTT topics and the database)
_SERVER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class Extension(_Strict):
    """A PBX object that gets events: a phone, a queue or an IVR."""

    id: Annotated[int, Field(ge=1)]
    name: Annotated[str, Field(min_length=1)]
    type: Literal["phone", "queue", "ivr"]
    endpoint: str | None = None
    mailbox: str | None = None
    queue: str | None = None
    context: str | None = None
    #: its display name, as the extension list of the API shows it (Telphin's ``label``)
    label: str | None = None

    @model_validator(mode="after")
    def _fields_for_type(self) -> Extension:
        need = {"phone": "endpoint", "queue": "queue", "ivr": "context"}[self.type]
        if not getattr(self, need):
            raise ValueError(f"an extension of type {self.type!r} needs {need!r}")
        if self.endpoint is not None:
            _device_ok(self.endpoint)
        return self

    @property
    def device(self) -> str | None:
        """The phone's device as its channels name it (``PJSIP/101``, ``SIP/150010001``)."""
        return device(self.endpoint) if self.endpoint else None

    @property
    def short(self) -> str:
        """The short number in ``client*short@domain`` (the whole name if it has no '*')."""
        return self.extended.rsplit("*", 1)[-1]

    @property
    def extended(self) -> str:
        """The extended number ``client*short``: the name without ``@domain``. Telphin writes
        the PBX's own extensions this way in CallerIDNum/CalledNumber."""
        return self.name.split("@", 1)[0]


#: ``variables: <preset>`` (or ``variables: {preset: <preset>, ...}`` to change some): the
#: names a known dialplan already uses. FreePBX sets FROM_DID on inbound routes, names its
#: recordings CALLFILENAME, and keeps the extension a call was for in EXTTOCALL (a
#: forwarded or follow-me leg to the trunk still carries it).
VARIABLE_PRESETS: dict[str, dict[str, str]] = {
    "default": {},
    "freepbx": {"did": "FROM_DID", "recording_id": "CALLFILENAME", "forwarded_from": "EXTTOCALL"},
}


class Variables(_Strict):
    """Names of the channel variables the dialplan sets (listed in manager.conf channelvars)."""

    tag: str = "TAG"
    callback_id: str = "CALLBACKID"
    diversion: str = "DIVERSION"
    client_api_id: str = "CLIENT_API_ID"
    recording_id: str = "RECID"
    forwarded_from: str = "FORWARDED_FROM"
    did: str = "DID"


def token_digest(token: str) -> bytes:
    """SHA-256 of an API token: how tokens are compared (and may be stored)."""
    return hashlib.sha256(token.encode()).digest()


#: an API client's id: what ``/client/{client_id}/`` paths take
CLIENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class ApiToken(_Strict):
    """A bearer token for the REST API; without ``extensions`` it covers all of them.

    Give the token itself (``token``) or, to keep it out of the file, its SHA-256 in hex
    (``sha256``; ``ami-bridge hash-token`` prints it).
    """

    token: Annotated[str, Field(min_length=16)] | None = Field(default=None, repr=False)
    #: a file holding the token (instead of ``token``)
    token_file: str | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    extensions: list[int] | None = None
    #: who the token is to ``GET /api/ver1.0/user/`` (and in ``/client/{client_id}/``)
    client_id: Annotated[str, Field(pattern=CLIENT_ID)] = "bridge"

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return _secret_from_file(cls, data)

    @model_validator(mode="after")
    def _one_form(self) -> ApiToken:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'token' or 'sha256' (or 'token_file' instead of 'token')")
        return self

    @property
    def digest(self) -> bytes:
        if self.sha256 is not None:
            return bytes.fromhex(self.sha256)
        assert self.token is not None
        return token_digest(self.token)


class ApiClient(_Strict):
    """An OAuth2 client (``client_credentials``): it trades its id and secret at
    ``POST /oauth/token`` for bearer tokens that expire; without ``extensions`` they
    cover all of them.

    Give the secret itself (``client_secret``) or, to keep it out of the file, its SHA-256
    in hex (``client_secret_sha256``; ``ami-bridge hash-token`` prints it).
    """

    client_id: Annotated[str, Field(pattern=CLIENT_ID)]
    client_secret: Annotated[str, Field(min_length=16)] | None = Field(default=None, repr=False)
    #: a file holding the secret (instead of ``client_secret``)
    client_secret_file: str | None = None
    client_secret_sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    extensions: list[int] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return _secret_from_file(cls, data)

    @model_validator(mode="after")
    def _one_form(self) -> ApiClient:
        if (self.client_secret is None) == (self.client_secret_sha256 is None):
            raise ValueError("give exactly one of 'client_secret' or 'client_secret_sha256' (or "
                             "'client_secret_file' instead of 'client_secret')")  # fmt: skip
        return self

    @property
    def digest(self) -> bytes:
        if self.client_secret_sha256 is not None:
            return bytes.fromhex(self.client_secret_sha256)
        assert self.client_secret is not None
        return token_digest(self.client_secret)


class ApiConfig(_Strict):
    """The REST API (subscriptions)."""

    listen: str = "127.0.0.1:8080"
    tokens: list[ApiToken] = []
    clients: list[ApiClient] = []
    #: how long a token from POST /oauth/token is good for, in seconds
    token_ttl: Annotated[int, Field(ge=60, le=30 * 86400)] = 3600
    #: how clients reach the API (``https://pbx.example.com:8443``), for the links it hands
    #: out (recordings); without it, the address the request came to
    public_url: Annotated[str, Field(pattern=r"^https?://[^/?#]+$")] | None = None
    max_subscriptions_per_extension: Annotated[int, Field(ge=1)] = 50
    max_subscriptions_total: Annotated[int, Field(ge=1)] = 5000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    #: requests per minute per token (per client address without one); 429 past it
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 600

    #: the console (``/dashboard``) on this listener too, behind a login with an API token
    #: or an OAuth client's credentials, scoped to its extensions
    console: bool = True

    @property
    def host_port(self) -> tuple[str, int]:
        return _host_port(self.listen)

    @model_validator(mode="after")
    def _listen_ok(self) -> ApiConfig:
        _listen_ok(self.listen, "127.0.0.1:8080")
        return self


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _listen_ok(listen: str, example: str) -> None:
    host, _, port = listen.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"listen must be 'host:port', e.g. {example} (got {listen!r})")


class ManagementConfig(_Strict):
    """The private listener: ``/metrics``, ``/health`` and the console, for the operator.

    Keep it on loopback (or a management network): without ``login`` its console shows
    every call and delivery to whoever reaches it.
    """

    listen: str = "127.0.0.1:8081"
    #: ask for a login (an API token or an OAuth client's credentials) here too
    login: bool = False
    #: how long a console login lasts, in seconds
    session_ttl: Annotated[int, Field(ge=60, le=7 * 86400)] = 8 * 3600

    @property
    def host_port(self) -> tuple[str, int]:
        return _host_port(self.listen)

    @model_validator(mode="after")
    def _listen_ok(self) -> ManagementConfig:
        _listen_ok(self.listen, "127.0.0.1:8081")
        return self


#: a duration's units (``7d``, ``12h``, ``30m``, ``45s``, ``2w``)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def duration(value: object) -> float | None:
    """A duration in seconds: a number of seconds, or a string such as ``7d``, ``12h``,
    ``30m``, ``45s``, ``2w`` (or ``3600``); 0 or null: None (forever)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: {_DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration: {_DURATION_HELP}")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a duration: {_DURATION_HELP}")
    return seconds or None


_DURATION_HELP = ("give seconds (3600) or a number with one unit s, m, h, d or w (30m, 12h, 7d); "
                  "0 or null keeps forever")  # fmt: skip


def _every(value: object) -> float:
    seconds = duration(value)
    if seconds is None:
        raise ValueError(f"{value!r}: the pruning needs an interval, e.g. 60 or 5m (at least 1 s)")
    return seconds


#: seconds, from a number or ``7d``/``12h``/``30m``; None: forever
Duration = Annotated[float | None, BeforeValidator(duration)]


class Retention(_Strict):
    """How long the store keeps what it no longer needs (each: seconds or 7d/12h/30m; 0 or
    null keeps forever). Pending deliveries and their events are never pruned.

    - ``delivered``: events whose deliveries are all done (or that had none) and which are
      no call's (SIP messages), counted from their EventTime;
    - ``failed``: deliveries given up (``/deliveries/``), counted from their event's time;
      while one is kept, so is its event (and that event's call);
    - ``history``: a call (its history, its extensions, its recordings' rows) and every
      event of it, counted from the call's start. The history is built from the events,
      so a call's events stay as long as the call, and a call stays at least as long as
      ``delivered`` too (the longer of the two; forever if either is).

    A recording's file is never deleted by the bridge, only its row. Expired API tokens
    are always pruned. The pruning runs every ``interval`` in a thread of its own.
    """

    delivered: Duration = 7 * 86400.0
    failed: Duration = 30 * 86400.0
    history: Duration = 90 * 86400.0
    #: how often the pruning runs
    interval: Annotated[float, BeforeValidator(lambda v: _every(v)), Field(ge=1)] = 60.0

    @property
    def calls(self) -> float | None:
        """How long a call and its events are kept: the longer of history and delivered."""
        if self.history is None or self.delivered is None:
            return None
        return max(self.history, self.delivered)


class StoreConfig(_Strict):
    """The store: embedded SQLite (``path``, the default) or PostgreSQL (``url``)."""

    path: str = "/var/lib/ami-bridge/bridge.db"
    synchronous: Literal["normal", "full"] = "normal"
    retention: Retention = Retention()
    # -- issue 19 (PostgreSQL store) ------------------------------------------------------
    #: a PostgreSQL database instead of the SQLite file: postgresql://user@host:port/dbname
    #: (libpq's URI; the password from it, PGPASSWORD/~/.pgpass, or ``password``/``password_file``)
    url: str | None = Field(default=None, repr=False)
    password: str | None = Field(default=None, repr=False)
    #: a file holding the database password (instead of ``password``)
    password_file: str | None = None
    # -- issue 19 (a cluster on PostgreSQL) -----------------------------------------------
    #: seconds a bridge's claim on a subscription's deliveries lasts without renewal (it
    #: renews every third of it); a dead bridge's subscriptions pass to another after it
    lease: Annotated[float, Field(ge=1, le=600)] = 15.0
    #: seconds between reads of the outbox for deliveries other bridges committed (the
    #: backstop of the NOTIFY wake-up)
    poll_interval: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return _secret_from_file(cls, data)

    @model_validator(mode="after")
    def _one_store(self) -> StoreConfig:
        if self.url is None:
            if self.password is not None:
                raise ValueError("'password' (or 'password_file') is for a PostgreSQL store: give 'url' too, "
                                 "or remove it (the SQLite store at 'path' has none)")  # fmt: skip
            return self
        if "path" in self.model_fields_set:
            raise ValueError("give 'path' (SQLite) or 'url' (PostgreSQL), not both: remove one of them")
        if not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("url must be a PostgreSQL URI, e.g. postgresql://bridge@db.example:5432/bridge "
                             "(for SQLite, give 'path' instead)")  # fmt: skip
        if "synchronous" in self.model_fields_set:
            raise ValueError("'synchronous' is SQLite's: remove it with 'url' (PostgreSQL commits are "
                             "durable as the server's own synchronous_commit says)")  # fmt: skip
        return self


#: Svix's schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts, ~28 h)
DEFAULT_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def _step(value: object) -> float:
    """One retry_schedule entry: seconds (0 allowed) or 5s/5m/2h."""
    help_ = "give a wait in seconds (0, 30) or with one unit s, m, h or d (5s, 5m, 2h)"
    if value is None:
        raise ValueError(f"null is not a wait: {help_}")
    try:
        seconds = duration(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a wait: {help_}") from None
    return 0.0 if seconds is None else seconds


class DeliveryConfig(_Strict):
    """Webhook delivery: timeouts, retries, concurrency, signing."""

    connect_timeout: Annotated[float, Field(gt=0)] = 5.0
    read_timeout: Annotated[float, Field(gt=0)] = 10.0
    #: a whole attempt, however the receiver dribbles its answer (slow loris)
    total_timeout: Annotated[float, Field(gt=0)] = 30.0
    max_attempts: Annotated[int, Field(ge=1)] = 10
    backoff_initial: Annotated[float, Field(gt=0)] = 1.0
    backoff_max: Annotated[float, Field(gt=0)] = 300.0
    concurrency: Annotated[int, Field(ge=1)] = 50
    secret: str | None = Field(default=None, repr=False)
    #: a file holding the signing secret (instead of ``secret``)
    secret_file: str | None = None
    #: seconds a replaced signing secret (global, or a subscription's) still signs, next
    #: to the new one, so that receivers can switch (a rotation)
    secret_rotation_overlap: Annotated[float, Field(ge=0)] = 86400.0
    #: networks webhooks may reach although private/loopback/link-local (SSRF guard)
    allow_networks: list[str] = []
    #: "builtin": the bridge's own HTTP/1.1 client (fast); "aiohttp": aiohttp's client
    #: (slower; honours HTTP(S)_PROXY from the environment)
    client: Literal["builtin", "aiohttp"] = "builtin"
    # -- issue 18 (retry policy, disabling): see :attr:`schedule` --------------------------
    #: the wait before each attempt (seconds or 5s/5m/2h), the first one's 0 (at once):
    #: as many attempts as entries. None: DEFAULT_SCHEDULE, unless the configuration sets
    #: backoff_initial, backoff_max or max_attempts (the exponential backoff they describe)
    retry_schedule: list[Annotated[float, BeforeValidator(lambda v: _step(v))]] | None = None
    #: a subscription whose deliveries failed with no success for this long is disabled
    #: (seconds or 5d/12h; 0 or null: never)
    disable_after: Duration = 5 * 86400.0

    @property
    def schedule(self) -> tuple[float, ...] | None:
        """The retry schedule in force: ``retry_schedule``, else the default one, or None
        when the configuration asks for the exponential backoff (it sets one of
        backoff_initial, backoff_max, max_attempts and no retry_schedule)."""
        if self.retry_schedule is not None:
            return tuple(self.retry_schedule)
        if self.model_fields_set & {"backoff_initial", "backoff_max", "max_attempts"}:
            return None
        return DEFAULT_SCHEDULE

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return _secret_from_file(cls, data)

    @model_validator(mode="after")
    def _schedule_ok(self) -> DeliveryConfig:
        steps = self.retry_schedule
        if steps is not None:
            if not steps:
                raise ValueError("retry_schedule: give at least one entry, e.g. [0, 5s, 5m, 30m, 2h]")
            if steps[0] != 0:
                raise ValueError("retry_schedule[0]: the first attempt is made at once; start with 0")
        return self

    @model_validator(mode="after")
    def _networks_ok(self) -> DeliveryConfig:
        import ipaddress

        for i, net in enumerate(self.allow_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as err:
                raise ValueError(f"allow_networks[{i}]: {err}") from err
        return self

    @model_validator(mode="after")
    def _whsec_ok(self) -> DeliveryConfig:
        from bridge.delivery.request import whsec_problem

        problem = whsec_problem(self.secret or "")
        if problem:
            key = "secret_file" if self.secret_file else "secret"
            raise ValueError(
                f"{key}: {problem}: give a Standard Webhooks secret 'whsec_<base64 of 24 to 64 "
                "random bytes>' (python3 -c \"import base64,os; print('whsec_' + "
                "base64.b64encode(os.urandom(32)).decode())\"), or a plain secret without 'whsec_'"
            )
        return self


class CallbackConfig(_Strict):
    """Where the dialplan continues calls the bridge starts or transfers."""

    context: str = "callback"
    transfer_context: str = "phones"
    #: where the API's "hold" sends a call: exten ``s`` for the party held (music on
    #: hold), ``wait`` for the extension holding it, until "offhold" bridges them again
    hold_context: str = "ami-bridge-hold"


class RecordingsConfig(_Strict):
    """Where the recordings (MixMonitor files, voicemail messages) are, so the API can serve them."""

    #: the only directories files are ever served from (as this machine sees them)
    dirs: list[str] = []
    #: a directory as Asterisk names it in events -> the same directory as this machine
    #: sees it (when Asterisk runs in a container, a chroot or on another host's share)
    path_map: dict[str, str] = {}
    #: how long a link from ``.../storage_url/`` works, in seconds
    link_ttl: Annotated[int, Field(ge=10, le=7 * 86400)] = 3600

    @model_validator(mode="after")
    def _absolute(self) -> RecordingsConfig:
        for i, d in enumerate(self.dirs):
            if not d.startswith("/"):
                raise ValueError(f"dirs[{i}]: {d!r} must be an absolute path")
        for src, dst in self.path_map.items():
            if not (src.startswith("/") and dst.startswith("/")):
                raise ValueError(f"path_map: {src!r}: {dst!r} must map an absolute path to an absolute path")
        return self


class VoicemailConfig(_Strict):
    """Where to read left messages' details (msg_id, duration)."""

    spool: str | None = None


class MqttTls(_Strict):
    """TLS to the broker (mqtts:// URLs turn it on; these files are optional)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


class MqttConfig(_Strict):
    """The MQTT mirror: every event also published as JSON."""

    url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "pbx/events"
    qos: Annotated[int, Field(ge=0, le=2)] = 1
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    #: a file holding the password (instead of ``password``)
    password_file: str | None = None
    client_id: str | None = None
    tls: MqttTls | None = None
    #: retained "online"/"offline" (the broker publishes "offline" as our Last Will)
    status_topic: str | None = None
    #: events kept while the broker is away; past this the oldest are dropped
    buffer_max: Annotated[int, Field(ge=1)] = 10000
    keepalive: Annotated[int, Field(ge=5)] = 30
    reconnect_max: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return _secret_from_file(cls, data)

    @model_validator(mode="after")
    def _url_ok(self) -> MqttConfig:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"url must look like mqtt://host:1883 or mqtts://host:8883 (got {self.url!r})")
        return self

    @property
    def host_port_tls(self) -> tuple[str, int, bool]:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        tls = parts.scheme == "mqtts"
        return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls

    @property
    def status(self) -> str:
        return self.status_topic or f"{self.topic_prefix}/status"


class Config(_Strict):
    """The whole file."""

    ami: AmiConfig
    extensions: list[Extension] = []
    trunks: list[str] = []
    variables: Variables = Variables()
    api: ApiConfig = ApiConfig()
    management: ManagementConfig = ManagementConfig()
    store: StoreConfig = StoreConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    callback: CallbackConfig = CallbackConfig()
    voicemail: VoicemailConfig = VoicemailConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    mqtt: MqttConfig | None = None

    def extension(self, ext_id: int) -> Extension | None:
        for ext in self.extensions:
            if ext.id == ext_id:
                return ext
        return None

    @property
    def trunk_devices(self) -> list[str]:
        """The trunks as their channels name them (``PJSIP/trunk``, ``SIP/voipgrid``)."""
        return [device(t) for t in self.trunks]

    @field_validator("variables", mode="before")
    @classmethod
    def _preset(cls, value: object) -> object:
        if isinstance(value, str):
            value = {"preset": value}
        if isinstance(value, dict) and "preset" in value:
            name = value["preset"]
            preset = VARIABLE_PRESETS.get(name) if isinstance(name, str) else None
            if preset is None:
                raise ValueError(f"unknown preset {name!r}: use one of {', '.join(VARIABLE_PRESETS)}, "
                                 "or name each variable")  # fmt: skip
            return {**preset, **{k: v for k, v in value.items() if k != "preset"}}
        return value

    @model_validator(mode="after")
    def _unique(self) -> Config:
        seen: dict[tuple[str, str], int] = {}
        for i, ext in enumerate(self.extensions):
            for key in (("id", str(ext.id)), ("name", ext.name)) + (
                (("endpoint", ext.device),) if ext.device else ()
            ):
                if key in seen:
                    raise ValueError(
                        f"extensions[{i}] has the same {key[0]} {key[1]!r} as extensions[{seen[key]}]"
                    )
                seen[key] = i
        for i, trunk in enumerate(self.trunks):
            try:
                _device_ok(trunk)
            except ValueError as err:
                raise ValueError(f"trunks[{i}]: {err}") from err
        clash = {e.device for e in self.extensions if e.device} & set(self.trunk_devices)
        if clash:
            raise ValueError(f"endpoint(s) {sorted(clash)} are listed both as phones and as trunks")
        ids = {e.id for e in self.extensions}
        for where, exts in [(f"api.clients[{i}]", c.extensions) for i, c in enumerate(self.api.clients)]:
            unknown = sorted(set(exts or ()) - ids)
            if unknown:
                raise ValueError(f"{where}.extensions: no extension has id {unknown[0]} (see extensions:)")
        if self.api.host_port == self.management.host_port:
            raise ValueError(f"management.listen {self.management.listen!r} is the API's address: give the "
                             "management listener a port of its own (e.g. 127.0.0.1:8081)")  # fmt: skip
        clients = [c.client_id for c in self.api.clients]
        twice = sorted({c for c in clients if clients.count(c) > 1})
        if twice:
            raise ValueError(f"api.clients: client_id {twice[0]!r} is given twice")
        return self


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration ({err.error_count()} problem(s)):"]
    for e in err.errors():
        loc = _path(tuple(x for x in e["loc"] if x not in ("function-after",)))
        if e["type"] == "extra_forbidden":
            msg = "unknown key (misspelt? see config.example.yaml for the valid keys)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text; raise :class:`ConfigError` with every problem listed."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(err, 'problem', err)}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (ami:, extensions:, ...)")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from err


def load_config(path: str | Path) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{p}: cannot read the configuration: {err.strerror}") from err
    return parse_config(text, str(p))


def permission_warning(path: str | Path) -> str | None:
    """A warning when a config file holding secrets is readable by other users."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & stat.S_IROTH:
        fix = f"chmod 0640 {path} and chown root:<service group> (or 0600 owned by the service user)"
        return f"{path} holds the AMI secret and API tokens but every user can read it: {fix}"
    return None


def secret_warnings(config: Config) -> list[str]:
    """A warning for each secret written in clear in the file (and each secret file other
    users can read), saying which safer form to use instead."""
    import os
    import stat

    found: list[tuple[str, BaseModel, str]] = [("ami", config.ami, "")]
    found += [(f"api.tokens[{i}]", t, "sha256") for i, t in enumerate(config.api.tokens)]
    found += [(f"api.clients[{i}]", c, "client_secret_sha256") for i, c in enumerate(config.api.clients)]
    found += [("delivery", config.delivery, "")]
    if config.mqtt is not None:
        found.append(("mqtt", config.mqtt, ""))
    out: list[str] = []
    for where, model, digest in found:
        clear, file = SECRET_FILES[type(model).__name__]
        path = getattr(model, file)
        if getattr(model, clear) is not None and path is None:
            instead = f"{where}.{digest} (ami-bridge hash-token prints it) or " if digest else ""
            out.append(f"{where}.{clear} is written in clear in the configuration: give {instead}"
                       f"{where}.{file}, a file only the bridge's user can read (or a systemd credential: "
                       f"{file}: {CREDENTIALS}/<name>; see README, Security)")  # fmt: skip
        elif path is not None and CREDENTIALS not in path:
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue
            if mode & stat.S_IROTH:
                out.append(f"{where}.{file}: {path} can be read by every user: chmod 0600 (owned by the "
                           "service user) or 0640 (group of the service)")  # fmt: skip
    return out
