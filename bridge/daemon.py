"""The daemon: AMI source -> translator -> outbox -> dispatcher, plus the REST API.

Start-up resumes whatever deliveries were pending when the last process stopped (even
by ``kill -9``). The pipeline takes the AMI messages that have arrived as one batch (up
to ``BATCH``; within ``COMMIT_INTERVAL`` of its last commit it first waits for the rest
of that interval, so that busy AMI traffic shares transactions), translates them, and
commits all their events with their deliveries, and the delivery outcomes known so far,
in one transaction before any of those deliveries is sent; the dispatcher gets them
from that commit, in memory. SIGTERM/SIGINT stop taking AMI input (what arrived
is still translated and committed), stop the API, give in-flight requests
``shutdown_grace`` seconds, and leave the rest pending for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bridge.ami.filter import coarse_filter, early_filter, needs
from bridge.ami.message import Message
from bridge.ami.source import AmiSource, SourceItem
from bridge.api import DISPATCHER_KEY, make_app
from bridge.api.control import ACTIONS_KEY, TRANSLATOR_KEY
from bridge.config import Config
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.guard import GuardedResolver, parse_networks
from bridge.delivery.http import make_client
from bridge.hub import EventHub
from bridge.hub import add_routes as add_dashboard
from bridge.mqtt import MqttMirror
from bridge.observability import Parts, Stats, make_registry
from bridge.observability import add_routes as add_observability
from bridge.sdnotify import Notifier, watchdog_loop
from bridge.store import Store, StoreError
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


class Daemon:
    def __init__(self, config: Config, shutdown_grace: float = 5.0) -> None:
        self.config = config
        self.shutdown_grace = shutdown_grace
        self.stopping = asyncio.Event()
        self.stats = Stats()
        #: loop time of the pipeline's last commit
        self._last_commit = -math.inf
        #: the running translator (its recordings are committed with its events)
        self.translator: Translator | None = None

    async def _pipeline(
        self,
        source: AmiSource,
        translator: Translator,
        store: Store,
        dispatcher: Dispatcher,
        mirror: MqttMirror | None,
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
                    self._deliver(translator.flush(), store, dispatcher, mirror, hub)
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
                self._deliver(events, store, dispatcher, mirror, hub)
                events = []
                log.info("AMI %s%s", item.kind, f": {item.detail}" if item.detail else "")
                if item.kind == "disconnected":
                    outage = True
                elif item.kind == "connected":
                    self.stats.ami_reconnects += 1
                    if outage:
                        outage = False
                        resynced = await self._resync(source, translator)
                        self._deliver(resynced, store, dispatcher, mirror, hub)
            self._deliver(events, store, dispatcher, mirror, hub)
            self.stats.ami_messages += len(items) - changes

    def _drain(
        self,
        source: AmiSource,
        translator: Translator,
        store: Store,
        dispatcher: Dispatcher,
        mirror: MqttMirror | None,
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
            self._deliver(events, store, dispatcher, mirror, hub)
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
        mirror: MqttMirror | None,
        hub: EventHub,
    ) -> None:
        """Commit a batch of events (one transaction, with the delivery outcomes known so
        far), then queue, mirror and show them."""
        records, done = self.translator.take_recordings() if self.translator is not None else ([], [])
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
        for ext_id, event in batch:
            self.stats.events_out[event["EventType"]] += 1
            if counts is not None:
                log.debug(
                    "event %s for extension %s -> %d deliveries",
                    event["EventType"], ext_id, counts[id(event)],
                    extra={"call_id": event["CallID"], "sub_call_id": event["SubCallID"],
                           "extension_id": ext_id},
                )  # fmt: skip
            if mirror is not None:
                mirror.publish(ext_id, event)
            hub.publish(ext_id, event)
        dispatcher.push(deliveries)

    async def run(self) -> None:
        config = self.config
        store = Store(config.store.path, config.store.synchronous)
        store.checkpoint_in_background()
        store.prune_in_background(config.store.retention)
        guard = GuardedResolver(parse_networks(config.delivery.allow_networks))
        client = make_client(config.delivery.client, guard, config.delivery.concurrency)
        dispatcher = Dispatcher(store, config.delivery, client)
        app = make_app(config, store)
        app[DISPATCHER_KEY] = dispatcher
        translator = Translator(config)
        translator.keep_recordings = True  # the API serves the files events name
        self.translator = translator
        app[TRANSLATOR_KEY] = translator
        need = needs(config)
        source = AmiSource(config.ami, want=early_filter(need), coarse=coarse_filter(need))
        app[ACTIONS_KEY] = source.action
        mirror = MqttMirror(config.mqtt) if config.mqtt is not None else None
        registry, latency = make_registry(Parts(self.stats, source, translator, store, dispatcher, mirror))
        dispatcher.on_delivered = latency.observe

        def ready() -> list[str]:
            problems = [] if source.connected else ["AMI not logged in"]
            why = store.writable()
            if why:
                problems.append(f"store not writable: {why}")
            return problems

        add_observability(app, registry, ready)
        hub = EventHub()
        add_dashboard(app, hub)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = config.api.host_port
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("API listening on http://%s:%s (docs at /docs)", host, port)
        dispatcher.start()  # what the previous process left pending; then watch the store
        mirror_task = asyncio.ensure_future(mirror.run()) if mirror is not None else None
        source.start()
        pipeline = asyncio.ensure_future(self._pipeline(source, translator, store, dispatcher, mirror, hub))
        notifier = Notifier.from_env()
        notifier.ready(f"API on {host}:{port}; AMI {config.ami.host}:{config.ami.port}")
        # systemd restarts us if the pipeline task dies or the loop stops turning
        watchdog = asyncio.ensure_future(watchdog_loop(notifier, lambda: not pipeline.done()))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        stop_wait = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait([pipeline, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            if pipeline.done() and pipeline.exception():
                raise pipeline.exception()  # type: ignore[misc]
        finally:
            log.info("stopping: no more AMI input, API closed, %.0f s for requests in flight",
                     self.shutdown_grace)  # fmt: skip
            notifier.stopping("finishing deliveries in flight")
            watchdog.cancel()
            source.close()
            pipeline.cancel()
            stop_wait.cancel()
            await asyncio.gather(pipeline, return_exceptions=True)
            self._drain(source, translator, store, dispatcher, mirror, hub)
            await runner.cleanup()
            try:
                await asyncio.wait_for(dispatcher.idle(), self.shutdown_grace)
            except TimeoutError:
                log.info("deliveries still pending are kept for the next start")
            await dispatcher.close()
            if mirror is not None and mirror_task is not None:
                mirror.stop()
                try:
                    await asyncio.wait_for(mirror_task, 3)
                except (TimeoutError, asyncio.CancelledError):
                    log.info("MQTT: %d events not published at stop", len(mirror.buffer))
            await client.close()
            await guard.close()
            store.close()
