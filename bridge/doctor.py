"""``ami-bridge doctor``: check that Asterisk gives the bridge what it needs, say how to fix it.

Checks, in order: AMI reachable (over TLS with ``ami.tls``: the handshake, said in plain
words when it fails); login accepted; events come back to us (read=user)
carrying ``Timestamp`` (``timestampevents = yes``; without it a warning says what is
lost); every configured phone and trunk device exists (PJSIP endpoints and chan_sip
peers are asked for; other technologies are named as not checked); every configured
queue exists; every IVR context exists (needs write=reporting, else a warning); with
``--watch SECONDS``, live traffic is observed to confirm read=call/dialplan and the
configured ``channelvars``. With a PostgreSQL store (``store.url``), first the database:
connected, its schema version, and a write (rolled back).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bridge.ami.source import ActionError, AmiSource, SourceItem
from bridge.config import AmiConfig, Config, StoreConfig


@dataclass
class Report:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, level: str, text: str) -> None:
        self.lines.append((level, text))

    @property
    def failed(self) -> bool:
        return any(level == "FAIL" for level, _ in self.lines)

    def render(self) -> str:
        return "\n".join(f"  {level:5} {text}" for level, text in self.lines)


async def _next(source: AmiSource, timeout: float) -> SourceItem | None:
    try:
        return await asyncio.wait_for(source.get(), timeout)
    except TimeoutError:
        return None


async def diagnose(config: Config, watch: float = 0.0, timeout: float = 8.0) -> Report:
    rep = Report()
    if config.store.url is not None:
        await asyncio.to_thread(check_database, config.store, rep)
    source = open_source(config.ami)
    try:
        return await _diagnose(config, source, rep, watch, timeout)
    finally:
        source.close()


def check_database(store: StoreConfig, rep: Report) -> None:
    """The PostgreSQL store: reachable, its schema version, and whether the bridge may write
    (a table created and rolled back: privileges, a read-only server). Changes nothing."""
    import psycopg

    from bridge.store_pg import SCHEMA_VERSION, connect, masked

    assert store.url is not None
    where = masked(store.url)
    try:
        conn = connect(store.url, store.password)
    except psycopg.Error as err:
        rep.add("FAIL", f"store: cannot connect to {where}: {str(err).strip()}. Fix: the server's address "
                "and port in store.url, pg_hba.conf letting this host in, and the password (in the URL, "
                "store.password_file, PGPASSWORD or ~/.pgpass)")  # fmt: skip
        return
    with conn:
        rep.add("OK", f"store: connected to {where} (PostgreSQL {conn.info.server_version // 10000})")
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = int(row[0]) if row else 0
        except psycopg.errors.UndefinedTable:
            version = 0
        except psycopg.Error as err:
            rep.add("FAIL", f"store: cannot read its schema version: {str(err).strip()}")
            return
        if version > SCHEMA_VERSION:
            rep.add("FAIL", f"store: schema version {version} is newer than this ami-bridge's "
                    f"{SCHEMA_VERSION}: upgrade ami-bridge")  # fmt: skip
        elif version < SCHEMA_VERSION:
            rep.add("OK", f"store: schema version {version or 'none (an empty database)'}; the bridge "
                    f"migrates it to {SCHEMA_VERSION} when it starts")  # fmt: skip
        else:
            rep.add("OK", f"store: schema version {version}")
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("CREATE TABLE ami_bridge_doctor (checked INTEGER)")
                conn.execute("INSERT INTO ami_bridge_doctor VALUES (1)")
        except psycopg.Error as err:
            rep.add("FAIL", f"store: cannot write: {str(err).strip()}. Fix: a primary (not a standby) "
                    "server, and a role owning the database (or with CREATE on its schema)")  # fmt: skip
        else:
            rep.add("OK", "store: writable (a test table created and rolled back)")


def open_source(ami: AmiConfig, events: str = "on") -> AmiSource:
    """An AMI connection for a one-off command: it tries once (its next attempt would be
    30 s away); :func:`login` says whether it got in."""
    source = AmiSource(ami.model_copy(update={"reconnect_min": 30.0, "reconnect_max": 30.0}), events=events)
    source.start()
    return source


async def login(source: AmiSource, timeout: float) -> str | None:
    """Wait for ``source`` to log in: None once it has, else what went wrong and how to fix it."""
    ami = source.config
    item = await _next(source, timeout)
    while item is not None and item.kind == "message":
        item = await _next(source, timeout)
    if item is None:
        tls = "" if ami.tls is not None else (" (If that port is AMI over TLS, manager.conf tlsbindaddr, "
                                              "configure ami.tls.)")  # fmt: skip
        return (f"AMI at {ami.host}:{ami.port} did not answer in {timeout:g} s. Fix: manager.conf "
                "[general] enabled = yes, port/bindaddr matching the config, and a firewall that "
                f"lets this host in.{tls}")  # fmt: skip
    if item.kind == "tls-failed":
        return f"AMI at {ami.host}:{ami.port} over TLS: {item.detail}."
    if item.kind == "login-failed":
        return (f"login as {ami.username!r} refused ({item.detail}). Fix: in manager.conf, a section "
                f"[{ami.username}] with this secret, and permit= covering this host.")  # fmt: skip
    return None


def unknown_command(err: ActionError) -> bool:
    """Whether AMI refused an action because no loaded module provides it (chan_sip gone)."""
    return "unknown command" in str(err).lower()


async def _diagnose(config: Config, source: AmiSource, rep: Report, watch: float, timeout: float) -> Report:
    ami = config.ami
    failure = await login(source, timeout)
    if failure is not None:
        rep.add("FAIL", failure)
        return rep
    rep.add("OK", f"AMI reachable at {ami.host}:{ami.port}, logged in as {ami.username!r}")

    # timestampevents and read=user: send ourselves a UserEvent
    try:
        await source.action({"Action": "UserEvent", "UserEvent": "AmiBridgeDoctor"})
    except ActionError as err:
        rep.add("WARN", f"could not send a test UserEvent ({err}); grant write=user to check timestampevents")
    else:
        seen: SourceItem | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while loop.time() < deadline:
            got = await _next(source, max(0.05, deadline - loop.time()))
            if got and got.msg is not None and got.msg.get("UserEvent") == "AmiBridgeDoctor":
                seen = got
                break
        if seen is None or seen.msg is None:
            rep.add("FAIL", "our test UserEvent never came back. Fix: manager.conf read= must include "
                            "user,call,dialplan,agent,system,originate for the bridge's user.")  # fmt: skip
        elif not seen.msg.get("Timestamp"):
            rep.add("WARN", NO_TIMESTAMP)
        else:
            rep.add("OK", "events come back with Timestamp (timestampevents = yes, read=user)")

    for ext in config.extensions:
        if ext.type == "phone" and ext.device:
            await _device(source, rep, ext.device, f"extension {ext.id}")
    for trunk in config.trunk_devices:
        await _device(source, rep, trunk, "trunk")
    for ext in config.extensions:
        if ext.type == "queue" and ext.queue:
            await _queue(source, rep, ext.queue, ext.id)
        if ext.type == "ivr" and ext.context:
            await _context(source, rep, ext.context, ext.id)
    if watch > 0:
        await _watch(config, source, rep, watch)
    rep.add("INFO", "on a busy PBX, let Asterisk drop the events the bridge never reads: put the lines "
                    "of 'ami-bridge eventfilter --config <this config>' in the bridge user's section of "
                    "manager.conf, then 'manager reload'")  # fmt: skip
    return rep


#: how each technology's device is looked up: (action, its argument, what it is, where it is defined)
_LOOKUPS = {
    "PJSIP": ("PJSIPShowEndpoint", "Endpoint", "PJSIP endpoint", "pjsip.conf"),
    "SIP": ("SIPshowpeer", "Peer", "chan_sip peer", "sip.conf"),
}

NO_TIMESTAMP = (
    "events carry no Timestamp (Asterisk's default). The bridge works, but EventTime is then the "
    "time it received each event: late by the network and its own queueing (milliseconds; seconds "
    "after an AMI outage, whose resync closes calls at the resync time anyway), and a recording "
    "made with 'ami-bridge record' replays with the recording's receive times instead of Asterisk's. "
    "Fix: manager.conf [general] timestampevents = yes, then 'manager reload'."
)


async def _device(source: AmiSource, rep: Report, device: str, what: str) -> None:
    tech, _, name = device.partition("/")
    lookup = _LOOKUPS.get(tech)
    if lookup is None:
        rep.add("INFO", f"{device} ({what}): {tech} devices are not checked; make sure it exists")
        return
    action, arg, kind, where = lookup
    try:
        await source.action({"Action": action, arg: name})
        rep.add("OK", f"{kind} {name} ({what}) exists")
    except ActionError as err:
        if "Permission" in str(err):
            rep.add("WARN", f"cannot check {kind} {name}: {err}. Grant read=system to check.")
        elif unknown_command(err):
            rep.add("FAIL", f"{device} ({what}): this Asterisk has no {tech} ({err}: the module is not "
                            f"loaded, or gone, as chan_sip is from Asterisk 21). Fix: the endpoint's "
                            f"technology in the bridge's config (a bare name means PJSIP).")  # fmt: skip
        else:
            rep.add("FAIL", f"{kind} {name} ({what}) does not exist ({err}). Fix: add it to "
                            f"{where}, or correct the endpoint in the bridge's config.")  # fmt: skip


async def _queue(source: AmiSource, rep: Report, queue: str, ext_id: int) -> None:
    try:
        resp = await source.manager.send_action({"Action": "QueueStatus", "Queue": queue})
    except Exception as err:  # panoramisk may raise anything on a dropped connection
        rep.add("WARN", f"cannot check queue {queue}: {err}")
        return
    found = isinstance(resp, list) and any(m.get("Event") == "QueueParams" for m in resp)
    if found:
        rep.add("OK", f"queue {queue} (extension {ext_id}) exists")
    else:
        rep.add("FAIL", f"queue {queue} (extension {ext_id}) does not exist. Fix: define [{queue}] in "
                        "queues.conf, or correct the queue name in the bridge's config.")  # fmt: skip


async def _context(source: AmiSource, rep: Report, context: str, ext_id: int) -> None:
    try:
        await source.action({"Action": "ShowDialPlan", "Context": context})
        rep.add("OK", f"IVR context {context} (extension {ext_id}) exists")
    except ActionError as err:
        if "Permission" in str(err):
            rep.add("WARN", f"cannot check IVR context {context} ({err}); grant write=reporting to check, or "
                            f"run 'dialplan show {context}' on the Asterisk CLI.")  # fmt: skip
        else:
            rep.add("FAIL", f"IVR context {context} (extension {ext_id}) does not exist ({err}). Fix: "
                            "extensions.conf, or the context in the bridge's config.")  # fmt: skip


async def _watch(config: Config, source: AmiSource, rep: Report, seconds: float) -> None:
    names = set(config.variables.model_dump().values())
    seen_vars: set[str] = set()
    kinds: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        got = await _next(source, max(0.05, deadline - loop.time()))
        if got is None or got.msg is None or not got.msg.event:
            continue
        kinds.add(got.msg.event)
        seen_vars |= set(got.msg.variables())
    if "Newchannel" not in kinds:
        rep.add("WARN", f"no call in {seconds:g} s of watching: place a call during --watch to check read "
                        "permissions and channelvars")  # fmt: skip
        return
    if "VarSet" not in kinds and "Newexten" not in kinds:
        rep.add("FAIL", "calls seen but no Newexten/VarSet. Fix: read=dialplan for the bridge's user.")
    else:
        rep.add("OK", "call and dialplan events arrive (read=call,dialplan)")
    missing = sorted(names - seen_vars)
    if missing:
        want = ",".join(sorted(names))
        rep.add("FAIL", f"channel variables missing from events: {', '.join(missing)}. Fix: manager.conf "
                        f"[general] channelvars = {want} (never PJSIP_HEADER(...) there).")  # fmt: skip
    else:
        rep.add("OK", "every configured channel variable is in channel events (channelvars)")
