"""Tell systemd how the daemon is doing: the sd_notify protocol, without libsystemd.

systemd hands a ``Type=notify`` service the address of a unix datagram socket in
``$NOTIFY_SOCKET`` (a filesystem path, or an abstract-namespace name written with a
leading ``@``) and, with ``WatchdogSec=``, the watchdog period in ``$WATCHDOG_USEC``.
Each message is one datagram of newline-separated ``KEY=value`` lines (``READY=1``,
``STATUS=...``, ``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1``). Outside systemd there is no socket and
every call is a harmless no-op that returns False; a failing send never raises either.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("bridge.sdnotify")

# a send never blocks the event loop longer than this (systemd reads its socket at once)
SEND_TIMEOUT = 1.0


def _one_line(text: str) -> str:
    """A value that cannot break the KEY=value framing: newlines become spaces."""
    return text.replace("\r", " ").replace("\n", " ")


class Notifier:
    """Sends sd_notify messages to the socket systemd gave this process, if any."""

    def __init__(self, socket_path: str | None, watchdog_usec: int | None) -> None:
        self.socket_path = socket_path or None
        self.watchdog_usec = watchdog_usec if watchdog_usec is not None and watchdog_usec > 0 else None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd set up for this process (``os.environ`` by default).

        ``WATCHDOG_USEC`` counts only when ``WATCHDOG_PID`` is unset or is this process:
        a watchdog meant for a parent is not ours to feed.
        """
        env: Mapping[str, str] = os.environ if environ is None else environ
        watchdog_usec: int | None = None
        raw_usec = env.get("WATCHDOG_USEC", "").strip()
        if raw_usec:
            try:
                watchdog_usec = int(raw_usec)
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw_usec)
        raw_pid = env.get("WATCHDOG_PID", "").strip()
        if watchdog_usec is not None and raw_pid:
            try:
                for_us = int(raw_pid) == os.getpid()
            except ValueError:
                for_us = False
            if not for_us:
                watchdog_usec = None
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when systemd gave a socket to notify."""
        return self.socket_path is not None

    @property
    def address(self) -> str | None:
        """The socket address to send to: ``@name`` is the abstract name ``\\0name``."""
        path = self.socket_path
        if path is None:
            return None
        return "\0" + path[1:] if path.startswith("@") else path

    def send(self, *fields: str) -> bool:
        """Send the ``KEY=value`` fields as one datagram; False if not sent (never raises)."""
        address = self.address
        if address is None or not fields:
            return False
        payload = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(payload, address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify to %s failed (further failures not logged): %s", self.socket_path, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Start-up is done: ``READY=1`` (systemd now counts the service as started)."""
        fields = ["READY=1"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        fields.append(f"MAINPID={os.getpid()}")
        return self.send(*fields)

    def reloading(self, status: str = "") -> bool:
        """A reload of the configuration has begun: ``RELOADING=1`` with
        ``MONOTONIC_USEC`` (when it began, as sd_notify(3) asks); :meth:`ready` ends it."""
        fields = ["RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        return self.send(*fields)

    def stopping(self, status: str = "") -> bool:
        """Shutdown has begun: ``STOPPING=1``."""
        fields = ["STOPPING=1"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        return self.send(*fields)

    def status(self, text: str) -> bool:
        """A one-line state shown by ``systemctl status``: ``STATUS=text``."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Keep-alive for ``WatchdogSec=``: ``WATCHDOG=1``."""
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between keep-alives (half the watchdog period), None without a watchdog."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000


async def watchdog_loop(notifier: Notifier, healthy: Callable[[], bool]) -> None:
    """Send ``WATCHDOG=1`` every ``watchdog_interval()`` seconds while ``healthy()`` is True.

    A daemon whose loop is wedged, or that reports itself unhealthy, stops feeding the
    watchdog, and systemd kills and restarts it. A ``healthy()`` that raises counts as
    unhealthy. Returns at once when there is no watchdog; otherwise runs until cancelled.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    was_healthy = True
    while True:
        try:
            ok = bool(healthy())
        except Exception:
            log.exception("watchdog health check raised; counted as unhealthy")
            ok = False
        if ok:
            notifier.watchdog()
            if not was_healthy:
                log.info("healthy again: watchdog keep-alives resumed")
        elif was_healthy:
            log.warning("unhealthy: watchdog keep-alives withheld, systemd will restart the service")
        was_healthy = ok
        await asyncio.sleep(interval)
