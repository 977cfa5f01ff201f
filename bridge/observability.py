"""Observability: Prometheus metrics at /metrics and readiness at /health.

Metrics are read from the live objects when scraped (a custom collector), so the hot
path only bumps plain counters; the delivery latency histogram is the one metric kept
by prometheus_client itself. /health answers 200 only when AMI is logged in and the
store accepts a write, 503 with the reasons otherwise.

Past one machine (several bridges, several Asterisk servers on one database) each
process says who it is: :func:`identity` gives its ``instance`` (host name and
management port: stable across restarts, unique per machine), its ``server`` (the AMI
server's name) and its ``store`` kind; /health carries them and /metrics exports them
as ``ami_bridge_info{instance, server, store} 1`` (join on it rather than relabelling
every metric: the metric names and labels stay as they were).
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bridge.ami.source import AmiSource
    from bridge.config import Config
    from bridge.delivery.dispatcher import Dispatcher
    from bridge.mqtt import MqttMirror
    from bridge.store import Store
    from bridge.translate import Translator


@dataclass
class Stats:
    """Counters the pipeline bumps; everything else is read from the objects."""

    ami_messages: int = 0
    events_out: Counter[str] = field(default_factory=Counter)
    ami_reconnects: int = 0
    #: AMI messages the translator failed on (a bug: logged with the message, skipped)
    translate_errors: int = 0
    #: reloads of the configuration (SIGHUP) by result: "ok" or "refused" (invalid file)
    config_reloads: Counter[str] = field(default_factory=lambda: Counter({"ok": 0, "refused": 0}))
    #: when the configuration running now was loaded (Unix time; 0: not known)
    config_loaded_at: float = 0.0


@dataclass
class Parts:
    stats: Stats
    source: AmiSource
    translator: Translator
    store: Store
    dispatcher: Dispatcher
    mirror: MqttMirror | None = None
    #: who this process is (:func:`identity`): /health and ``ami_bridge_info`` say it
    about: dict[str, str] = field(default_factory=dict)


def server_name(config: Config) -> str:
    """The AMI server's name: ``ami.name`` when the config has one, else ``host:port``."""
    name = getattr(config.ami, "name", None)  # ami.name (issue 19, part 2): read it once it exists
    return str(name) if name else f"{config.ami.host}:{config.ami.port}"


def identity(config: Config, hostname: str | None = None) -> dict[str, str]:
    """Which process this is, for /health and ``ami_bridge_info``: ``instance`` is the
    host name and the management port (two bridges on one machine have two ports; the same
    bridge restarted keeps its id), ``server`` the AMI server it reads, ``store`` its kind
    (``sqlite`` or ``postgresql``; never the URL, which may hold a password)."""
    _, port = config.management.host_port
    return {
        "instance": f"{hostname or socket.gethostname()}:{port}",
        "server": server_name(config),
        "store": "postgresql" if config.store.url is not None else "sqlite",
    }


class _Collector(Collector):
    def __init__(self, parts: Parts) -> None:
        self.p = parts

    def collect(self) -> Iterator[Metric]:
        p = self.p
        yield GaugeMetricFamily(
            "ami_bridge_ami_connected", "1 while logged in to AMI", value=int(p.source.connected)
        )
        yield CounterMetricFamily(
            "ami_bridge_ami_messages", "AMI messages received", value=p.stats.ami_messages
        )
        yield CounterMetricFamily("ami_bridge_ami_reconnects", "AMI (re)logins", value=p.stats.ami_reconnects)
        yield CounterMetricFamily("ami_bridge_translate_errors", "AMI messages the translator failed on "
                                  "(skipped, logged)", value=p.stats.translate_errors)  # fmt: skip
        reloads = CounterMetricFamily("ami_bridge_config_reloads", "Reloads of the configuration (SIGHUP) by "
                                      "result: ok, or refused (invalid file)", labels=["result"])  # fmt: skip
        for result, n in sorted(p.stats.config_reloads.items()):
            reloads.add_metric([result], n)
        yield reloads
        yield GaugeMetricFamily("ami_bridge_config_loaded_timestamp_seconds", "When the configuration running"
                                " now was loaded (Unix time)", value=p.stats.config_loaded_at)  # fmt: skip
        out = CounterMetricFamily("ami_bridge_events", "Extension events emitted", labels=["type"])
        for kind, n in sorted(p.stats.events_out.items()):
            out.add_metric([kind], n)
        yield out
        dl = CounterMetricFamily("ami_bridge_deliveries", "Delivery attempts by outcome", labels=["outcome"])
        for outcome, n in sorted(p.dispatcher.outcomes.items()):
            dl.add_metric([outcome], n)
        yield dl
        off = CounterMetricFamily("ami_bridge_subscriptions_disabled", "Subscriptions the bridge disabled: "
                                  "gone (the receiver answered 410), failing (delivery.disable_after)",
                                  labels=["reason"])  # fmt: skip
        for reason, n in sorted(p.dispatcher.disabled.items()):
            off.add_metric([reason], n)
        yield off
        yield GaugeMetricFamily("ami_bridge_deliveries_pending", "Deliveries waiting (retry queue depth)",
                                value=p.store.count_deliveries("pending"))  # fmt: skip
        yield GaugeMetricFamily("ami_bridge_deliveries_failed", "Deliveries given up (see /deliveries/)",
                                value=p.store.count_deliveries("failed"))  # fmt: skip
        yield GaugeMetricFamily("ami_bridge_store_bytes", "The store's database file and WAL, in bytes",
                                value=p.store.file_bytes())  # fmt: skip
        pruning = p.store.pruning
        if pruning is not None:
            pruner = pruning.pruner
            pruned = CounterMetricFamily("ami_bridge_store_pruned", "Rows the store's retention deleted",
                                         labels=["kind"])  # fmt: skip
            for kind, n in sorted(pruner.pruned.items()):
                pruned.add_metric([kind], n)
            yield pruned
            if pruner.last_at is not None and pruner.last_seconds is not None:
                yield GaugeMetricFamily("ami_bridge_store_last_prune_timestamp_seconds",
                                        "When the last pruning pass ran", value=pruner.last_at)  # fmt: skip
                yield GaugeMetricFamily("ami_bridge_store_last_prune_duration_seconds",
                                        "How long it took", value=pruner.last_seconds)  # fmt: skip
        yield GaugeMetricFamily(
            "ami_bridge_active_calls", "Calls in progress", value=p.translator.active_calls
        )
        yield GaugeMetricFamily(
            "ami_bridge_active_channels", "Channels tracked", value=len(p.translator.channels)
        )
        if p.mirror is not None:
            yield GaugeMetricFamily("ami_bridge_mqtt_connected", "1 while connected to the broker",
                                    value=int(p.mirror.connected))  # fmt: skip
            yield GaugeMetricFamily("ami_bridge_mqtt_buffered", "Events waiting for the broker",
                                    value=len(p.mirror.buffer))  # fmt: skip
            yield CounterMetricFamily("ami_bridge_mqtt_dropped", "Events dropped: buffer full",
                                      value=p.mirror.dropped)  # fmt: skip
            yield CounterMetricFamily(
                "ami_bridge_mqtt_published", "Events published", value=p.mirror.published
            )
        if p.about:
            info = GaugeMetricFamily("ami_bridge_info", "This process: its instance (host:management port), "
                                     "the AMI server it reads, its store kind; always 1",
                                     labels=sorted(p.about))  # fmt: skip
            info.add_metric([p.about[k] for k in sorted(p.about)], 1)
            yield info


def make_registry(parts: Parts) -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    registry.register(_Collector(parts))
    latency = Histogram(
        "ami_bridge_delivery_latency_seconds",
        "From the AMI event to the receiver's 2xx",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        registry=registry,
    )
    return registry, latency


def add_routes(app: web.Application, registry: CollectorRegistry, ready: Callable[[], list[str]],
               about: dict[str, str] | None = None) -> None:  # fmt: skip
    """/metrics and /health, on the management listener (no token: keep it on loopback or a
    management network); /health also says ``about`` (:func:`identity`)."""

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        problems = ready()
        status = 200 if not problems else 503
        return web.json_response(
            {"ready": not problems, "problems": problems, **(about or {})}, status=status
        )

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
