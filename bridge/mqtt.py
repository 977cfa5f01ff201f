"""The MQTT mirror: every event also published, as JSON, to a broker (aiomqtt).

Topic ``<topic_prefix>/<extension_id>/<EventType>``, payload the event's fields as a
JSON object, QoS as configured. A retained status topic says ``online`` while the bridge
is connected; the broker publishes ``offline`` (retained) as the bridge's Last Will if
the connection dies, and the bridge publishes it itself on a clean stop.

The mirror never blocks the AMI pipeline: :meth:`MqttMirror.publish` only appends to a
bounded buffer. While the broker is away the buffer keeps the newest ``buffer_max``
events; past that the oldest are dropped and counted (``dropped``), and a warning is
logged. Reconnects back off exponentially up to ``reconnect_max`` seconds.

A subscription disabled (or enabled again) is announced, retained, on
``<status topic>/subscription/<id>``: ``{"id", "extension_id", "url", "enabled",
"reason", "at"}`` (:meth:`MqttMirror.subscription_status`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections import deque
from typing import Any

import aiomqtt

from bridge.config import MqttConfig

log = logging.getLogger(__name__)


class MqttMirror:
    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self.buffer: deque[tuple[str, bytes]] = deque()
        #: subscription status messages (retained) waiting for the broker, the newest 1000
        self.statuses: deque[tuple[str, bytes]] = deque(maxlen=1000)
        self.dropped = 0
        self.published = 0
        self.connected = False
        #: failed connection attempts so far (for metrics)
        self.failures = 0
        self._wake = asyncio.Event()
        self._stopping = False
        #: a reload changed the settings: leave the broker and connect again with them
        self._reconnect = False

    def reconfigure(self, config: MqttConfig) -> None:
        """Use new settings (a reload): the connection, if any, is closed cleanly (what is
        buffered stays buffered, "offline" published on the old status topic) and made
        again with them at once. Events buffered keep the topic they were queued with;
        a smaller ``buffer_max`` drops the oldest beyond it (counted in ``dropped``)."""
        if config == self.config:
            return
        self.config = config
        while len(self.buffer) > config.buffer_max:
            self.buffer.popleft()
            self.dropped += 1
        self._reconnect = True
        self._wake.set()

    def publish(self, extension_id: int, event: dict[str, Any]) -> None:
        """Queue one event for the broker; never blocks, never raises."""
        topic = f"{self.config.topic_prefix}/{extension_id}/{event.get('EventType', 'unknown')}"
        if len(self.buffer) >= self.config.buffer_max:
            self.buffer.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("MQTT buffer full (%d events): dropped %d oldest so far", self.config.buffer_max,
                            self.dropped)  # fmt: skip
        self.buffer.append((topic, json.dumps(event, ensure_ascii=False).encode()))
        self._wake.set()

    def subscription_status(self, sub_id: int, status: dict[str, Any]) -> None:
        """Queue a subscription's status (retained) for ``<status topic>/subscription/<id>``."""
        self.statuses.append((f"{self.config.status}/subscription/{sub_id}", json.dumps(status).encode()))
        self._wake.set()

    def _client(self) -> aiomqtt.Client:
        host, port, tls = self.config.host_port_tls
        tls_context = None
        if tls or self.config.tls is not None:
            t = self.config.tls
            tls_context = ssl.create_default_context(cafile=t.ca_file if t else None)
            if t and t.cert_file:
                tls_context.load_cert_chain(t.cert_file, t.key_file)
            if t and t.insecure:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        return aiomqtt.Client(
            host,
            port,
            username=self.config.username,
            password=self.config.password,
            identifier=self.config.client_id,
            will=aiomqtt.Will(self.config.status, b"offline", qos=1, retain=True),
            keepalive=self.config.keepalive,
            tls_context=tls_context,
            timeout=10,
        )

    async def run(self) -> None:
        """Connect, publish, reconnect; until cancelled or :meth:`stop`."""
        delay = 0.5
        while not self._stopping:
            self._reconnect = False
            try:
                async with self._client() as client:
                    self.connected = True
                    delay = 0.5
                    status = self.config.status
                    log.info("MQTT connected to %s", self.config.url)
                    await client.publish(status, b"online", qos=1, retain=True)
                    await self._drain(client)
                    await client.publish(status, b"offline", qos=1, retain=True)
                    if self._stopping:
                        return
                    log.info("MQTT: reconnecting with the reloaded settings")
                    continue
            except aiomqtt.MqttError as err:
                self.failures += 1
                if self.connected:
                    log.warning("MQTT connection lost: %s; %d events buffered", err, len(self.buffer))
                else:
                    log.warning(
                        "MQTT broker %s unreachable: %s; retrying in %.1f s", self.config.url, err, delay
                    )
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            while self.statuses and not self._reconnect:
                topic, payload = self.statuses[0]
                await client.publish(topic, payload, qos=1, retain=True)
                self.statuses.popleft()
            while self.buffer and not self._reconnect:  # after a reload: for the new broker
                topic, payload = self.buffer[0]
                await client.publish(topic, payload, qos=self.config.qos)
                self.buffer.popleft()  # only once the broker took it
                self.published += 1
            if self._stopping or self._reconnect:
                return
            self._wake.clear()
            await self._wake.wait()

    def stop(self) -> None:
        """Flush what is buffered, publish "offline" and disconnect (run() returns)."""
        self._stopping = True
        self._wake.set()
