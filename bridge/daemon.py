"""The daemon: AMI source -> translator -> outbox -> dispatcher, plus the REST API.

Start-up resumes whatever deliveries were pending when the last process stopped (even
by ``kill -9``). The pipeline takes the AMI messages that have arrived as one batch (up
to ``BATCH``; within ``COMMIT_INTERVAL`` of its last commit it first waits for the rest
of that interval, so that busy AMI traffic shares transactions), translates them, and
commits all their events with their deliveries, and the delivery outcomes known so far,
in one transaction before any of those deliveries is sent; the dispatcher gets them
from that commit, in memory. SIGTERM/SIGINT stop taking AMI input (what arrived
is still translated and committed), stop the API, give in-flight requests
``shutdown_grace`` seconds, and leave the rest pending for the next start. SIGHUP
reloads the configuration file (:meth:`Daemon.reload`) without touching the AMI
connection or the deliveries in flight.

On a PostgreSQL store the daemon is one bridge of a cluster (issue 19; README, "A
cluster"): it registers its extensions under ``ami.name``, leaves the events of calls it
did not see whole to the bridges that did (:attr:`Translator.partial`), and its
dispatcher sends the subscriptions whose lease it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge import logs
from bridge.ami.filter import coarse_filter, early_filter, needs
from bridge.ami.message import Message
from bridge.ami.source import AmiSource, SourceItem
from bridge.api import DISPATCHER_KEY, make_app
from bridge.api.app import reconfigure as reconfigure_api
from bridge.api.app import reconfigure_management
from bridge.api.auth import index_credentials
from bridge.api.common import CONFIG_KEY, STORE_KEY
from bridge.api.control import ACTIONS_KEY, TRANSLATOR_KEY
from bridge.api.extensions import registry_entries
from bridge.config import Config, ConfigError, load_config, permission_warning
from bridge.console.web import Console, add_console, loopback_hosts
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.guard import GuardedResolver, parse_networks
from bridge.delivery.http import AiohttpClient, WebhookClient, make_client
from bridge.hub import EventHub
from bridge.mqtt import MqttMirror
from bridge.observability import Parts, Stats, identity, make_registry
from bridge.observability import add_routes as add_observability
from bridge.reload import changed, effective, restart_needed, summary
from bridge.sdnotify import Notifier, watchdog_loop
from bridge.store import ExtensionConflict, Store, StoreError, Subscription, open_store
from bridge.translate import Emitted, Translator
from bridge.translate.translator import PENDING_WAIT_US
from bridge.voicemail import enrich as enrich_voicemail

log = logging.getLogger("bridge.daemon")

#: AMI messages taken (translated, committed) at most per turn of the pipeline
BATCH = 2000
#: group commit: a turn that comes sooner than this after the last commit first waits for
#: the rest of it, so that what AMI sends meanwhile shares one transaction (at 450 calls/s
#: a turn per call would mean ~450 commits/s, each writing the same few pages again)
COMMIT_INTERVAL = 0.005


@dataclass
class Running:
    """The parts of a running daemon a reload reconfigures."""

    source: AmiSource
    translator: Translator
    app: web.Application
    dispatcher: Dispatcher
    guard: GuardedResolver
    client: WebhookClient | AiohttpClient
    parts: Parts
    notifier: Notifier
    #: the management listener's application (its console checks tokens and clients too)
    management: web.Application | None = None


class Daemon:
    def __init__(self, config: Config, shutdown_grace: float = 5.0, config_path: str | None = None) -> None:
        self.config = config
        self.shutdown_grace = shutdown_grace
        self.stopping = asyncio.Event()
        self.stats = Stats()
        #: loop time of the pipeline's last commit
        self._last_commit = -math.inf
        #: the running translator (its recordings are committed with its events)
        self.translator: Translator | None = None
        #: what the console shows (calls, delivery health, charts)
        self.console: Console | None = None
        #: the file ``run --config`` named: SIGHUP reads it again (see :meth:`reload`)
        self.config_path = config_path
        self.mirror: MqttMirror | None = None
        self._mirror_task: asyncio.Task[None] | None = None
        #: mirrors a reload removed or replaced, finishing their buffers
        self._retired: set[asyncio.Task[None]] = set()
        #: what a reload changes, set by run()
        self._running: Running | None = None
        #: the store, once run() opened it
        self._store: Store | None = None

    async def _pipeline(
        self,
        source: AmiSource,
        translator: Translator,
        store: Store,
        dispatcher: Dispatcher,
        hub: EventHub,
    ) -> None:
        outage = False
        feed = translator.feed
        loop = asyncio.get_running_loop()
        while True:
            # (nothing is taken before the waits: a stop while waiting leaves it queued)
            if translator.waiting:
                # hangups wait for what Asterisk may send after a Hangup; on a quiet PBX
                # no later message lets them go, so a timer does
                try:
                    await asyncio.wait_for(source.wait(), PENDING_WAIT_US / 1_000_000)
                except TimeoutError:
                    self._deliver(translator.flush(), store, dispatcher, hub)
                    continue
            else:
                await source.wait()
            wait = self._last_commit + COMMIT_INTERVAL - loop.time()
            if wait > 0 and source.queued < BATCH:
                await asyncio.sleep(wait)
            items = source.take(BATCH)
            # the clock is read here, never in the translator: only for events without Timestamp
            now_us = time.time_ns() // 1000
            events: list[tuple[int, dict[str, Any]]] = []
            changes = 0
            for item in items:
                if not isinstance(item, SourceItem):
                    events += self._translate(feed, item, now_us)
                    continue
                # a connection change: what came before it is committed first, in order
                changes += 1
                self._deliver(events, store, dispatcher, hub)
                events = []
                log.info("AMI %s%s", item.kind, f": {item.detail}" if item.detail else "")
                if self.console is not None and item.kind in ("connected", "disconnected"):
                    self.console.timeline.ami(item.kind == "connected", time.time())
                if item.kind == "disconnected":
                    outage = True
                elif item.kind == "connected":
                    self.stats.ami_reconnects += 1
                    if outage:
                        outage = False
                        resynced = await self._resync(source, translator)
                        if store.cluster:  # what it did meanwhile is unknown here: see README, A cluster
                            translator.mark_partial()
                        self._deliver(resynced, store, dispatcher, hub, every_call=True)
            self._deliver(events, store, dispatcher, hub)
            self.stats.ami_messages += len(items) - changes

    def _drain(
        self,
        source: AmiSource,
        translator: Translator,
        store: Store,
        dispatcher: Dispatcher,
        hub: EventHub,
    ) -> None:
        """At stop: what AMI sent that the pipeline had not taken yet is translated and
        committed too (its deliveries then get the shutdown's grace like the others)."""
        now_us = time.time_ns() // 1000
        events: list[tuple[int, dict[str, Any]]] = []
        for item in source.take(source.queued):
            if not isinstance(item, SourceItem):
                events += self._translate(translator.feed, item, now_us)
        events += translator.flush()  # nothing more will come
        try:
            self._deliver(events, store, dispatcher, hub)
        except StoreError as err:
            log.error("%d events received before the stop could not be stored: %s", len(events), err)

    def _translate(self, feed: Callable[[Message, int], list[Emitted]], msg: Message,
                   now_us: int) -> list[Emitted]:  # fmt: skip
        """The events of one message; none when the translator fails on it (a bug must
        not stop the bridge for every call: it is logged with the message and counted)."""
        try:
            return feed(msg, now_us)
        except Exception:
            self._untranslatable(msg)
            return []

    def _untranslatable(self, msg: Message) -> None:
        self.stats.translate_errors += 1
        log.exception(
            "could not translate AMI %s for channel %s (skipped; the events of its call may be "
            "incomplete): please report this with the message below\n%s",
            msg.event, msg.get("Uniqueid"), "".join(f"{k}: {v}\n" for k, v in msg.pairs)[:4000],
        )  # fmt: skip

    async def _resync(self, source: AmiSource, translator: Translator) -> list[tuple[int, dict[str, Any]]]:
        """After an outage: ask which channels are up, end the calls that ended meanwhile."""
        try:
            resp = await asyncio.wait_for(source.manager.send_action({"Action": "CoreShowChannels"}), 10)
        except Exception as err:  # a dropped connection, a timeout: the next reconnect retries
            log.warning("AMI resync failed (%s): calls that ended during the outage stay open", err)
            return []
        listed = resp if isinstance(resp, list) else [resp]
        live = {str(m.get("Uniqueid")) for m in listed if m.get("Event") == "CoreShowChannel"}
        events = translator.resync(live, time.time_ns() // 1000)
        log.warning("AMI resync: %d channels up; %d events for calls that ended during the outage "
                    "(their end time is the resync time)", len(live), len(events))  # fmt: skip
        return events

    def _deliver(
        self,
        events: list[tuple[int, dict[str, Any]]],
        store: Store,
        dispatcher: Dispatcher,
        hub: EventHub,
        every_call: bool = False,
    ) -> None:
        """Commit a batch of events (one transaction, with the delivery outcomes known so
        far), then queue, mirror and show them. In a cluster, without ``every_call``, the
        events of calls not seen whole are left out (another bridge saw them whole)."""
        translator = self.translator
        if store.cluster and translator is not None and translator.partial:
            if not every_call:
                partial = translator.partial
                events = [e for e in events if e[1].get("CallID") not in partial]
            translator.forget_partial()
        records, done = translator.take_recordings() if translator is not None else ([], [])
        if not events and not done:
            return
        spool = self.config.voicemail.spool
        for record in records:
            enrich_voicemail(record, spool)
        batch = events
        marks = dispatcher.take_marks()
        try:
            deliveries = store.enqueue_many(batch, marks, records, done)
        except BaseException:
            dispatcher.return_marks(marks)
            raise
        self._last_commit = asyncio.get_running_loop().time()
        # deliveries per event (each Delivery holds its event's dict), for the debug line only
        counts = Counter(id(d.event) for d in deliveries) if log.isEnabledFor(logging.DEBUG) else None
        timeline = self.console.timeline if self.console is not None else None
        wall = time.time()
        for ext_id, event in batch:
            self.stats.events_out[event["EventType"]] += 1
            if timeline is not None:
                timeline.event(event["EventType"], event.get("CallID"), wall)
            if counts is not None:
                log.debug(
                    "event %s for extension %s -> %d deliveries",
                    event["EventType"], ext_id, counts[id(event)],
                    extra={"call_id": event["CallID"], "sub_call_id": event["SubCallID"],
                           "extension_id": ext_id},
                )  # fmt: skip
            if self.mirror is not None:
                self.mirror.publish(ext_id, event)
            hub.publish(ext_id, event)
        dispatcher.push(deliveries)

    async def run(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)  # never its default: death
        self.stats.config_loaded_at = time.time()
        store = self._store = open_store(config.store)
        store.server = logs.server = config.ami.name
        if store.cluster:  # an extension lives on one server: refused here (ExtensionConflict) if not
            try:
                store.register_extensions(config.ami.name, registry_entries(config))
            except ExtensionConflict:
                store.close()
                raise
            except StoreError as err:  # (a server read-only for now: /health says so)
                log.error("%s: the other bridges' APIs do not know this server's extensions until "
                          "a reload (SIGHUP) registers them", err)  # fmt: skip
        store.checkpoint_in_background()
        store.prune_in_background(config.store.retention)
        guard = GuardedResolver(parse_networks(config.delivery.allow_networks))
        client = make_client(config.delivery.client, guard, config.delivery.concurrency)
        dispatcher = Dispatcher(store, config.delivery, client)
        if store.cluster:
            owner = f"{config.ami.name}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
            store.owner = owner  # type: ignore[attr-defined]  # (a PgStore)
            dispatcher.lead(owner, config.store.lease, config.store.poll_interval,
                            store.notifications)  # type: ignore[attr-defined]  # fmt: skip
            log.info("cluster: server %s, bridge %s (leases of %g s)", config.ami.name, owner,
                     config.store.lease)  # fmt: skip
            try:  # a bridge of this host that died: its leases now, not once they expire
                for dead in store.release_dead_leases(socket.gethostname()):  # type: ignore[attr-defined]
                    log.info("subscription leases of %s (no such process any more) released", dead)
            except StoreError as err:
                log.warning("%s", err)
        app = make_app(config, store)
        app[DISPATCHER_KEY] = dispatcher
        translator = Translator(config)
        translator.keep_recordings = True  # the API serves the files events name
        self.translator = translator
        app[TRANSLATOR_KEY] = translator
        need = needs(config)
        source = AmiSource(config.ami, want=early_filter(need), coarse=coarse_filter(need))
        app[ACTIONS_KEY] = source.action
        mirror = self.mirror = MqttMirror(config.mqtt) if config.mqtt is not None else None
        parts = Parts(self.stats, source, translator, store, dispatcher, mirror, identity(config))
        registry, latency = make_registry(parts)
        dispatcher.on_delivered = latency.observe

        def ready() -> list[str]:
            problems = [] if source.connected else ["AMI not logged in"]
            why = store.writable()
            if why:
                problems.append(f"store not writable: {why}")
            return problems

        hub = EventHub()
        console = Console(hub, store, session_ttl=config.management.session_ttl, wake=dispatcher.wake)
        console.timeline.ami(False, time.time())
        self.console = console

        def attempted(sub_id: int, ok: bool, took: float, status: int | None, error: str | None,
                      since_event: float | None) -> None:  # fmt: skip
            wall = time.time()
            console.health.attempt(sub_id, wall, ok, took, status, error)
            console.timeline.delivery(ok, since_event, wall)

        dispatcher.on_attempt = attempted

        def subscription_status(sub: Subscription, enabled: bool, reason: str | None) -> None:
            if self.mirror is not None:  # (the mirror a reload made, if it did)
                self.mirror.subscription_status(sub.id, {"id": sub.id, "extension_id": sub.extension_id,
                                                         "url": sub.url, "enabled": enabled, "reason": reason,
                                                         "at": time.time()})  # fmt: skip

        dispatcher.on_status = subscription_status
        if config.api.console:
            add_console(app, console, login=True, hosts=None)
        mgmt = web.Application()
        mgmt[CONFIG_KEY], mgmt[STORE_KEY] = config, store
        index_credentials(mgmt, config)
        mhost, mport = config.management.host_port
        add_console(mgmt, console, login=config.management.login, hosts=loopback_hosts(mhost))
        add_observability(mgmt, registry, ready, parts.about)
        runner = web.AppRunner(app, access_log=None)
        mrunner = web.AppRunner(mgmt, access_log=None)
        await runner.setup()
        await mrunner.setup()
        host, port = config.api.host_port
        site = web.TCPSite(runner, host, port)
        await site.start()
        msite = web.TCPSite(mrunner, mhost, mport)
        try:
            await msite.start()
        except OSError as err:
            await runner.cleanup()
            raise OSError(
                err.errno,
                f"management.listen {config.management.listen}: {err.strerror} "
                "(another process has that port? give management.listen another one)",
            ) from err
        log.info("API listening on http://%s:%s (docs at /docs); console, /metrics and /health on "
                 "http://%s:%s/", host, port, mhost, mport)  # fmt: skip
        dispatcher.start()  # what the previous process left pending; then watch the store
        self._mirror_task = asyncio.ensure_future(mirror.run()) if mirror is not None else None
        source.start()
        pipeline = asyncio.ensure_future(self._pipeline(source, translator, store, dispatcher, hub))
        notifier = Notifier.from_env()
        self._running = Running(source, translator, app, dispatcher, guard, client, parts, notifier, mgmt)
        notifier.ready(f"API on {host}:{port}; AMI {config.ami.host}:{config.ami.port}")
        # systemd restarts us if the pipeline task dies or the loop stops turning
        watchdog = asyncio.ensure_future(watchdog_loop(notifier, lambda: not pipeline.done()))
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        stop_wait = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait([pipeline, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            if pipeline.done() and pipeline.exception():
                raise pipeline.exception()  # type: ignore[misc]
        finally:
            self._running = None  # no reload while stopping
            log.info("stopping: no more AMI input, API closed, %.0f s for requests in flight",
                     self.shutdown_grace)  # fmt: skip
            notifier.stopping("finishing deliveries in flight")
            watchdog.cancel()
            source.close()
            pipeline.cancel()
            stop_wait.cancel()
            await asyncio.gather(pipeline, return_exceptions=True)
            self._drain(source, translator, store, dispatcher, hub)
            await runner.cleanup()
            await mrunner.cleanup()
            try:
                await asyncio.wait_for(dispatcher.idle(), self.shutdown_grace)
            except TimeoutError:
                log.info("deliveries still pending are kept for the next start")
            await dispatcher.close()
            mirror, mirror_task = self.mirror, self._mirror_task  # the reloads' last
            if mirror is not None and mirror_task is not None:
                mirror.stop()
                try:
                    await asyncio.wait_for(mirror_task, 3)
                except (TimeoutError, asyncio.CancelledError):
                    log.info("MQTT: %d events not published at stop", len(mirror.buffer))
            await asyncio.gather(*self._retired, return_exceptions=True)
            await client.close()
            await guard.close()
            store.close()

    # ---- reloading the configuration (SIGHUP) ------------------------------------------

    def _on_sighup(self) -> None:
        try:
            self.reload()
        except Exception:  # a bug in a reload must not stop the bridge
            log.exception("reload failed midway: some settings may be the new ones; restart to be sure")

    def reload(self) -> bool:
        """Read the configuration file again and apply it; False when it is refused.

        An invalid file is refused with the errors ``check-config`` prints, and the
        previous configuration keeps running. Otherwise extensions, trunks, variables,
        API tokens and clients (and every other API setting), delivery settings and MQTT
        apply at once; the AMI connection and the requests in flight are untouched.
        Settings only a restart can change (:data:`bridge.reload.RESTART_ONLY`) keep
        their running values, and the log names them.
        """
        running = self._running
        if running is None or self.config_path is None:
            log.warning("reload ignored: %s", "the bridge is starting or stopping" if self.config_path else
                        "no configuration file to read again")  # fmt: skip
            return False
        running.notifier.reloading(f"reloading {self.config_path}")
        status = "reload refused: the previous configuration is running"
        try:
            try:
                new = load_config(self.config_path)
            except ConfigError as err:
                self.stats.config_reloads["refused"] += 1
                log.error("reload refused: %s\nstill running the previous configuration", err)
                return False
            warning = permission_warning(self.config_path)
            if warning:
                log.warning("%s", warning)
            old = self.config
            later = restart_needed(old, new)
            config = effective(old, new)
            if self._store is not None and self._store.cluster:
                try:  # (the running ami.name: a restart-only setting)
                    self._store.register_extensions(config.ami.name, registry_entries(config))
                except StoreError as err:
                    self.stats.config_reloads["refused"] += 1
                    log.error("reload refused: %s\nstill running the previous configuration", err)
                    return False
            self._apply(running, old, config)
            self.stats.config_reloads["ok"] += 1
            self.stats.config_loaded_at = time.time()
            status = f"configuration reloaded: {summary(config)}"
            log.info("configuration reloaded from %s: %s; changed: %s", self.config_path, summary(config),
                     ", ".join(changed(old, config)) or "nothing")  # fmt: skip
            if later:
                log.warning("needs a restart to apply: %s (everything else is applied; the running "
                            "values are kept until then)", ", ".join(later))  # fmt: skip
            return True
        finally:
            running.notifier.ready(status)

    def _apply(self, running: Running, old: Config, config: Config) -> None:
        """Hand a valid configuration (restart-only settings as running) to every part."""
        self.config = config
        running.translator.reconfigure(config)
        need = needs(config)
        if need != needs(old):
            # the login's event mask stays as it is (all events): only our own filters change
            running.source.set_filters(early_filter(need), coarse_filter(need))
        reconfigure_api(running.app, config)
        if running.management is not None:
            reconfigure_management(running.management, config)
        if self.console is not None:
            self.console.session_ttl = config.management.session_ttl
        running.guard.allow = parse_networks(config.delivery.allow_networks)
        if config.delivery.allow_networks != old.delivery.allow_networks and isinstance(
            running.client, WebhookClient
        ):
            # kept-alive connections were made under the old guard: new ones pass the new one
            self._retired.add(closing := asyncio.ensure_future(running.client.close()))
            closing.add_done_callback(self._retired.discard)
        running.dispatcher.reconfigure(config.delivery)
        if config.mqtt != old.mqtt:
            self._remirror(running, config)

    def _remirror(self, running: Running, config: Config) -> None:
        """MQTT added (a mirror started), removed (its buffer flushed, then it stops) or
        changed (it reconnects with the new settings, keeping what it buffered)."""
        mirror, task = self.mirror, self._mirror_task
        if config.mqtt is not None and mirror is not None:
            mirror.reconfigure(config.mqtt)
            return
        if mirror is not None and task is not None:
            mirror.stop()
            retired = asyncio.ensure_future(self._retire(mirror, task))
            self._retired.add(retired)
            retired.add_done_callback(self._retired.discard)
        self.mirror = MqttMirror(config.mqtt) if config.mqtt is not None else None
        self._mirror_task = asyncio.ensure_future(self.mirror.run()) if self.mirror is not None else None
        running.parts.mirror = self.mirror

    @staticmethod
    async def _retire(mirror: MqttMirror, task: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait_for(task, 3)
        except (TimeoutError, asyncio.CancelledError):
            log.info("MQTT removed: %d events not published", len(mirror.buffer))
