"""The dispatcher: sends the outbox's pending deliveries, in order per subscription.

One worker task per subscription with pending deliveries sends them oldest first, one
at a time, so a receiver sees its events in order; a slow or dead receiver only holds
up its own worker. A global semaphore bounds concurrent requests. Each attempt is
classified (wazo-webhookd's policy):

* 2xx: delivered;
* 410 Gone: the receiver asks us to stop: the subscription is disabled, the delivery failed;
* 429, 5xx, timeouts, connection errors: retried with exponential backoff, full jitter
  and a cap, until ``max_attempts``, then failed (kept, inspectable, retryable);
* any other status: failed at once (retrying would not change the answer).

State lives in the store, so a restart (even ``kill -9``) resumes where it stopped;
a delivery interrupted mid-request is sent again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from bridge.config import DeliveryConfig
from bridge.delivery.guard import SsrfBlocked, parse_networks, refusal
from bridge.delivery.request import WebhookRequest, build_request
from bridge.store import Delivery, Store

log = logging.getLogger(__name__)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _blocked(err: BaseException) -> SsrfBlocked | None:
    """The SSRF refusal behind an aiohttp connection error, if that is what it was."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, SsrfBlocked):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None


class Dispatcher:
    def __init__(
        self,
        store: Store,
        config: DeliveryConfig,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_delivered: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.session = session
        self.clock = clock
        self.rng = rng or random.Random()
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._sem = asyncio.Semaphore(config.concurrency)
        self.outcomes: dict[str, int] = {"delivered": 0, "retry": 0, "failed": 0, "disabled": 0}
        #: called with seconds from the event's EventTime to the receiver's 2xx
        self.on_delivered = on_delivered
        self.allow = parse_networks(config.allow_networks)

    def wake(self) -> None:
        """Start a worker for every subscription that has pending deliveries."""
        for sub_id in self.store.pending_subscriptions():
            task = self._workers.get(sub_id)
            if task is None or task.done():
                self._workers[sub_id] = asyncio.ensure_future(self._work(sub_id))

    async def idle(self) -> None:
        """Wait until every worker has nothing left to send now."""
        while any(not t.done() for t in self._workers.values()):
            await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    def backoff(self, attempts: int) -> float:
        cap = min(self.config.backoff_max, self.config.backoff_initial * 2 ** (attempts - 1))
        return self.rng.uniform(cap / 2, cap)

    async def _work(self, sub_id: int) -> None:
        while True:
            delivery = self.store.next_pending(sub_id)
            if delivery is None:
                return
            wait = delivery.next_at - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._attempt(delivery)

    async def _send(
        self, req: WebhookRequest, timeout: aiohttp.ClientTimeout
    ) -> tuple[int | None, str | None]:
        """One HTTP request: (status, None) or (None, what went wrong)."""
        try:
            async with (
                asyncio.timeout(self.config.total_timeout),
                self.session.request(
                    req.method,
                    req.url,
                    data=req.body or None,
                    headers=req.headers,
                    timeout=timeout,
                    allow_redirects=False,
                ) as resp,
            ):
                await resp.content.read(65536)  # read a little, never a huge body
                return resp.status, None
        except (aiohttp.ClientError, TimeoutError) as err:
            blocked = _blocked(err)
            return None, str(blocked) if blocked else f"{type(err).__name__}: {err}"

    async def _attempt(self, d: Delivery) -> None:
        sub = self.store.subscription_by_id(d.subscription_id)
        if sub is None or not sub.enabled:
            self.store.mark(d.id, "failed", d.attempts, error="subscription deleted or disabled")
            self.outcomes["failed"] += 1
            return
        req = build_request(sub.method, sub.url, d.event, d.idempotency_key, self.config.secret,
                            int(self.clock()))  # fmt: skip
        attempts = d.attempts + 1
        status: int | None = None
        error: str | None = None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout,
                                        sock_read=self.config.read_timeout)  # fmt: skip
        started = time.monotonic()
        host = (urlsplit(req.url).hostname or "").strip("[]")
        # aiohttp does not resolve IP literals, so its resolver cannot guard them
        literal = refusal(host, self.allow) if _is_ip(host) else None
        async with self._sem:
            if literal:
                error = f"refused by the SSRF guard: {literal} (allow it with delivery.allow_networks)"
            else:
                status, error = await self._send(req, timeout)
        took = time.monotonic() - started
        if status is not None and 200 <= status < 300:
            self.store.mark(d.id, "delivered", attempts, status=status)
            outcome = "delivered"
            event_time = d.event.get("EventTime")
            if self.on_delivered is not None and isinstance(event_time, int):
                self.on_delivered(max(0.0, self.clock() - event_time / 1e6))
        elif status == 410:
            self.store.disable_subscription(sub.id, "receiver answered 410 Gone")
            self.store.mark(d.id, "failed", attempts, status=status, error="410 Gone: subscription disabled")
            outcome = "disabled"
        elif (status is None or status == 429 or status >= 500) and attempts < self.config.max_attempts \
                and not (error or "").startswith("refused by the SSRF guard"):  # fmt: skip
            self.store.mark(d.id, "pending", attempts, self.clock() + self.backoff(attempts), status, error)
            outcome = "retry"
        else:
            self.store.mark(d.id, "failed", attempts, status=status, error=error or f"HTTP {status}")
            outcome = "failed"
        self.outcomes[outcome] += 1
        log.info("delivery %s to subscription %s: %s (status %s, attempt %s, %.3f s)%s",
                 d.id, sub.id, outcome, status, attempts, took, f": {error}" if error else "")  # fmt: skip
