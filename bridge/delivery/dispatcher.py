"""The dispatcher: sends the outbox's pending deliveries, in order per subscription.

One worker task per subscription with pending deliveries sends them oldest first, one
at a time, so a receiver sees its events in order; a slow or dead receiver only holds
up its own worker (and, in order, each delivery waits for the one before: head-of-line
blocking). A subscription with ``ordering = "parallel"`` has up to ``max_in_flight``
requests in flight instead, each delivery's retries waiting on their own, not holding
up the others; one with a ``rate_limit`` sends at most that many requests per second
(aiolimiter's leaky bucket: they wait, never fail). A global semaphore bounds concurrent
requests. Each attempt is
classified (wazo-webhookd's policy):

* 2xx: delivered;
* 410 Gone: the receiver asks us to stop: the subscription is disabled, the delivery failed;
* 429, 5xx, timeouts, connection errors: retried, then failed (kept, inspectable,
  retryable). Attempt n+1 waits ``delivery.retry_schedule[n]`` (Svix's schedule by
  default: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), plus up to 10% jitter; a
  configuration that sets only the older ``backoff_initial``/``backoff_max``/``max_attempts``
  keeps their exponential backoff with full jitter. A ``Retry-After`` on 429 or 503 is
  waited at least, up to the longest wait of the schedule (``backoff_max``) and never
  more than a day;
* any other status: failed at once (retrying would not change the answer).

Every attempt is stored (time, status, latency, error, the answer's first KiB) with the
outcomes. A subscription whose attempts have all failed for ``delivery.disable_after``
(its "failing since" is kept in the store, so it survives restarts; a success clears it)
is disabled like a 410's: its pending deliveries are failed (``recover`` puts them back),
``on_status`` is told (the daemon publishes it over MQTT) and ``disabled`` counts it.

State lives in the store, so a restart (even ``kill -9``) resumes where it stopped;
a delivery interrupted mid-request is sent again with the same idempotency key.

The hot path does not read the store: the daemon commits a batch of events and hands
the deliveries :meth:`Store.enqueue_many` returned to :meth:`Dispatcher.push`, which
queues them in memory per subscription (at most ``WINDOW`` each: past that they stay
in the store only and are read back, oldest first, when the queue has drained).
Outcomes are recorded in batches (with the daemon's next commit of events, which takes
them with :meth:`Dispatcher.take_marks`, or in a transaction of their own after
``MARK_DELAY`` seconds or ``MARK_BATCH`` outcomes, and on :meth:`Dispatcher.idle` /
:meth:`Dispatcher.close`): a
``kill -9`` can lose the last few, and those deliveries are sent again (with the same
key) by the next process, which at-least-once allows. The store is read at start and
by :meth:`Dispatcher.wake`, which picks up pending deliveries not queued here (the
API's retry of failed ones); :meth:`Dispatcher.start` also calls it when another
process has written the store (``ami-bridge deliveries --retry``).

In a cluster (a PostgreSQL store several bridges share, issue 19: :meth:`Dispatcher.lead`)
a bridge sends only the subscriptions whose lease it holds (``store.lease`` seconds,
renewed every third of it; a dead bridge's leases pass to another once expired), and
reads their deliveries from the store, oldest id first (ids follow commit order there),
whoever committed them: after its own commits, when another bridge NOTIFYs, and every
``store.poll_interval`` seconds (the backstop). Its in-memory queue of a subscription is
dropped as soon as its lease is no longer sure (a third of the lease before it expires).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from urllib.parse import urlsplit

from aiolimiter import AsyncLimiter

from bridge.config import DeliveryConfig
from bridge.delivery.answer import BODY_KEPT, Answer
from bridge.delivery.guard import SsrfBlocked, is_ip, parse_networks, refusal
from bridge.delivery.http import AiohttpClient, HttpError, WebhookClient
from bridge.delivery.request import WebhookRequest, build_request
from bridge.store import Delivery, Outcomes, Store, StoreError, Subscription

log = logging.getLogger(__name__)


class _Queue:
    """One subscription's deliveries waiting here, oldest first, and its worker."""

    __slots__ = ("in_flight", "items", "limiter", "rate", "slots", "slots_size", "spilled", "task")

    def __init__(self) -> None:
        self.items: deque[Delivery] = deque()
        #: the store holds pending deliveries of this subscription that are not in items
        self.spilled = False
        self.task: asyncio.Task[None] | None = None
        #: parallel ordering: the requests allowed in flight, and the tasks sending them
        self.slots: asyncio.Semaphore | None = None
        self.slots_size = 0
        self.in_flight: set[asyncio.Task[None]] = set()
        #: the rate limit (requests/s) and its bucket
        self.rate: float | None = None
        self.limiter: AsyncLimiter | None = None

    def limit(self, rate: float | None) -> AsyncLimiter | None:
        """The bucket for ``rate`` requests/s (a new one when the rate changed)."""
        if rate != self.rate:
            self.rate = rate
            # at most one request every 1/rate s (a bucket of one), so it never bursts
            self.limiter = AsyncLimiter(1, 1 / rate) if rate else None
        return self.limiter


class Dispatcher:
    #: deliveries queued in memory per subscription (more wait in the store)
    WINDOW = 1000
    #: outcomes are written at most this many seconds after they are known (sooner with
    #: the daemon's events, which it commits every few ms while AMI is busy)...
    MARK_DELAY = 0.02
    #: ... or as soon as this many are waiting
    MARK_BATCH = 500
    #: how often :meth:`start` checks whether another process wrote the store
    WATCH_INTERVAL = 1.0
    #: a scheduled wait is lengthened by up to this share of it (receivers that failed
    #: together are not all tried again at the same instant)
    JITTER = 0.1
    #: the longest ``Retry-After`` honoured, whatever the schedule (seconds)
    MAX_RETRY_AFTER = 86400.0

    def __init__(
        self,
        store: Store,
        config: DeliveryConfig,
        client: WebhookClient | AiohttpClient,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_delivered: Callable[[float], None] | None = None,
        on_attempt: Callable[[int, bool, float, int | None, str | None, float | None], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.client = client
        self.clock = clock
        self.rng = rng or random.Random()
        self._queues: dict[int, _Queue] = {}
        #: ids of the deliveries queued here or in flight (never read back from the store)
        self._known: set[int] = set()
        self._out = Outcomes()
        self._flush_at: asyncio.TimerHandle | None = None
        self._watch: asyncio.Task[None] | None = None
        self._sem = asyncio.Semaphore(config.concurrency)
        self._sem_size = config.concurrency
        self.outcomes: dict[str, int] = {"delivered": 0, "retry": 0, "failed": 0, "disabled": 0}
        #: called with seconds from the event's EventTime to the receiver's 2xx
        self.on_delivered = on_delivered
        #: called after every attempt with (subscription id, delivered, seconds the request
        #: took, status, error, seconds from the event's EventTime when delivered)
        self.on_attempt = on_attempt
        self.allow = parse_networks(config.allow_networks)
        #: the SSRF refusal of each URL's IP literal host (None: a name, or allowed)
        self._literal: dict[str, str | None] = {}
        self._previous_secret = self._global_previous(config)
        #: since when (unix seconds) each subscription's attempts have all failed
        self._failing: dict[int, float] = store.failing()
        #: subscriptions disabled here, by reason ("gone": a 410; "failing": disable_after)
        self.disabled: Counter[str] = Counter({"gone": 0, "failing": 0})
        #: called with (subscription, enabled, reason) when one is disabled or enabled again
        self.on_status: Callable[[Subscription, bool, str | None], None] | None = None
        # ---- a cluster (issue 19): see lead() ----
        #: this bridge's lease owner id; None: not in a cluster (every subscription is ours)
        self.owner: str | None = None
        #: the subscriptions whose lease it holds, until ``_held_until`` (monotonic)
        self._held: set[int] = set()
        self._held_until = -math.inf
        self._lease = 15.0
        self._poll_interval = 1.0
        self._poke = asyncio.Event()
        #: set to renew the leases now (a subscription the last renewal did not know of)
        self._renew_now = asyncio.Event()
        #: the subscriptions that existed at the last renewal (held here or elsewhere)
        self._leased_over: set[int] = set()
        self._cluster_tasks: list[asyncio.Task[None]] = []
        self._listen: Callable[[], AsyncIterator[str]] | None = None

    def lead(self, owner: str, lease: float, poll_interval: float,
             listen: Callable[[], AsyncIterator[str]] | None = None) -> None:  # fmt: skip
        """Send in a cluster: only the subscriptions whose lease ``owner`` holds, their
        deliveries read from the store. ``listen``: an async iterator factory of the store's
        NOTIFY payloads (any one wakes the poll); call before :meth:`start`."""
        self.owner = owner
        self._lease, self._poll_interval = lease, poll_interval
        self._listen = listen

    def holds(self, sub_id: int) -> bool:
        """Whether this bridge may send the subscription's deliveries now."""
        return self.owner is None or (sub_id in self._held and time.monotonic() < self._held_until)

    def reconfigure(self, config: DeliveryConfig) -> None:
        """Use new delivery settings (a reload) from the next attempt on: timeouts,
        retries, backoff, secret, allowed networks and concurrency. Requests in flight
        finish as they started (they hold the old concurrency's slots, so for a while
        both limits may be in use). ``client`` is chosen at start only."""
        self.config = config
        if config.concurrency != self._sem_size:
            self._sem, self._sem_size = asyncio.Semaphore(config.concurrency), config.concurrency
        self.allow = parse_networks(config.allow_networks)
        self._literal.clear()
        self._previous_secret = self._global_previous(config)

    def _global_previous(self, config: DeliveryConfig) -> tuple[str | None, float]:
        """The global secret ``config.secret`` replaced, and until when it still signs."""
        try:
            return self.store.global_previous(config.secret, self.clock(), config.secret_rotation_overlap)
        except StoreError as err:
            log.error("%s: a replaced delivery.secret no longer signs", err)
            return None, 0.0

    def secrets(self, sub: Subscription, now: float) -> list[str]:
        """The secrets signing a request of ``sub`` at ``now``: its own, or the global ones
        (with the one a rotation replaced, during the overlap)."""
        own = sub.secrets(now)
        if own or sub.secret:
            return own
        keys = [self.config.secret] if self.config.secret else []
        previous, until = self._previous_secret
        if previous is not None and now < until:
            keys.append(previous)
        return keys

    # ---- queueing --------------------------------------------------------------------

    def push(self, deliveries: Iterable[Delivery]) -> None:
        """Queue deliveries just committed (as :meth:`Store.enqueue_many` returned them).
        In a cluster, the subscriptions held here read them back from the store instead
        (with what other bridges committed before them, in id order)."""
        if self.owner is not None:
            for sub_id in {d.subscription_id for d in deliveries}:
                if self.holds(sub_id):
                    q = self._queue(sub_id)
                    q.spilled = True
                    self._run(sub_id, q)
                elif sub_id not in self._leased_over:  # a new subscription: its lease is free
                    self._renew_now.set()
            return
        for d in deliveries:
            q = self._queue(d.subscription_id)
            if q.spilled or len(q.items) >= self.WINDOW:
                q.spilled = True  # read back from the store when the queue has drained
            else:
                q.items.append(d)
                self._known.add(d.id)
            self._run(d.subscription_id, q)

    def wake(self) -> None:
        """Read the store for pending deliveries not queued here (what a previous process
        left, failed ones put back by the API or the CLI) and send them."""
        self.flush()
        for sub_id in self.store.pending_subscriptions():
            if not self.holds(sub_id):
                continue
            q = self._queue(sub_id)
            self._load(sub_id, q)
            if q.items:
                self._run(sub_id, q)

    def _queue(self, sub_id: int) -> _Queue:
        q = self._queues.get(sub_id)
        if q is None:
            q = self._queues[sub_id] = _Queue()
        return q

    def _run(self, sub_id: int, q: _Queue) -> None:
        """Start the subscription's worker unless it is running."""
        if q.task is None or q.task.done():
            q.task = asyncio.ensure_future(self._work(sub_id, q))

    def _load(self, sub_id: int, q: _Queue) -> None:
        """Merge the subscription's oldest pending deliveries from the store into its queue
        (outcomes are flushed before, so none of those is already sent)."""
        rows = self.store.pending(sub_id, self.WINDOW)
        new = [d for d in rows if d.id not in self._known]
        q.spilled = len(rows) >= self.WINDOW  # maybe more than the window: look again once drained
        if not new:
            return
        merged = sorted([*q.items, *new], key=lambda d: d.id)
        for d in merged[self.WINDOW :]:  # the newest, beyond the window, wait in the store
            self._known.discard(d.id)
            q.spilled = True
        q.items = deque(merged[: self.WINDOW])
        self._known.update(d.id for d in q.items)

    def start(self) -> None:
        """Resume what the store holds, then watch it for writes of other processes."""
        if self.owner is not None and not self._cluster_tasks:
            self._cluster_tasks = [asyncio.ensure_future(t) for t in (self._leases(), self._polls())]
            if self._listen is not None:
                self._cluster_tasks.append(asyncio.ensure_future(self._notified()))
        self.wake()
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._watch_store())

    # ---- a cluster (issue 19) ----------------------------------------------------------

    def _renew(self) -> None:
        """Take or renew the leases; forget the queues of subscriptions no longer held."""
        started = time.monotonic()
        assert self.owner is not None
        self.store.refresh()
        self._leased_over = {sub.id for sub in self.store.all_subscriptions()}
        held = self.store.take_leases(self.owner, self._lease)  # type: ignore[attr-defined]
        # sure until a third of the lease before it expires (renewed every third)
        self._held_until = started + self._lease * 2 / 3
        lost, new = self._held - held, held - self._held
        self._held = held
        for sub_id in lost:
            self._drop(sub_id)
        if lost or new:
            log.info("subscription leases: %d held (%d taken, %d lost)", len(held), len(new), len(lost))
        if new:
            self.wake()

    def _drop(self, sub_id: int) -> None:
        """Forget what is queued here for a subscription (another bridge sends it now)."""
        q = self._queues.get(sub_id)
        if q is not None:
            for d in q.items:
                self._known.discard(d.id)
            q.items.clear()
            q.spilled = False

    async def _leases(self) -> None:
        while True:
            try:
                self._renew()
            except StoreError as err:
                log.error("%s; this bridge sends nothing once its leases are no longer sure", err)
            except Exception:  # a bug must not end the renewals (the leases would pass)
                log.exception("renewing the subscription leases failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renew_now.wait(), self._lease / 3)
            self._renew_now.clear()

    async def _polls(self) -> None:
        """Every poll interval, or sooner when another bridge NOTIFYs: read the store for
        deliveries of the subscriptions held here."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._poll_interval)
            self._poke.clear()
            try:
                self._poll()
            except StoreError as err:
                log.error("cannot read the outbox: %s", err)
            except Exception:
                log.exception("reading the outbox failed")

    def _poll(self) -> None:
        self.store.refresh()  # (a subscription another bridge's API made, changed or deleted)
        self.flush()
        for sub_id in self.store.pending_subscriptions():
            if not self.holds(sub_id):
                continue
            q = self._queue(sub_id)
            if q.task is not None and not q.task.done():
                q.spilled = True  # its worker reads the store once its queue has drained
                continue
            self._load(sub_id, q)
            if q.items:
                self._run(sub_id, q)

    async def _notified(self) -> None:
        """Wake the poll when another bridge committed deliveries (LISTEN; reconnects)."""
        assert self._listen is not None
        while True:
            try:
                async for payload in self._listen():
                    if payload != self.owner:
                        self._poke.set()
            except Exception as err:  # a dropped connection: polling goes on meanwhile
                log.warning("LISTEN for other bridges' deliveries failed (%s); polling every %g s, "
                            "listening again in 5 s", err, self._poll_interval)  # fmt: skip
            await asyncio.sleep(5)

    async def _watch_store(self) -> None:
        version = self.store.data_version()
        while True:
            await asyncio.sleep(self.WATCH_INTERVAL)
            try:
                now = self.store.data_version()
                if now != version:
                    version = now
                    self.wake()
            except StoreError as err:
                log.error("cannot read the store: %s", err)

    async def idle(self) -> None:
        """Wait until every worker has nothing left to send now (outcomes written)."""
        while True:
            tasks = [q.task for q in self._queues.values() if q.task is not None and not q.task.done()]
            tasks += [t for q in self._queues.values() for t in q.in_flight]
            if not tasks:
                break
            await asyncio.gather(*tasks, return_exceptions=True)
        self.flush()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for task in self._cluster_tasks:
            task.cancel()
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        tasks += [t for q in self._queues.values() for t in q.in_flight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._cluster_tasks, return_exceptions=True)
        self.flush()
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if self.owner is not None:  # outcomes written: another bridge may take over at once
            try:
                self.store.release_leases(self.owner)  # type: ignore[attr-defined]
            except StoreError as err:
                log.warning("%s: the other bridges take them over once they expire", err)
            self._held.clear()

    # ---- outcomes --------------------------------------------------------------------

    def _mark(self, delivery_id: int, state: str, attempts: int, next_at: float = 0.0,
              status: int | None = None, error: str | None = None) -> None:  # fmt: skip
        self._out.marks.append((state, attempts, next_at, status, error, delivery_id))
        if len(self._out.marks) >= self.MARK_BATCH:
            self.flush()
        else:
            self._flush_in(self.MARK_DELAY)

    def _flush_in(self, delay: float) -> None:
        """Flush after ``delay`` seconds, unless a flush is already due."""
        if self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(delay, self.flush)

    def take_marks(self) -> Outcomes:
        """The outcomes not written yet, for a caller that writes them in its own
        transaction (:meth:`Store.enqueue_many`); if that fails, :meth:`return_marks`."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        marks, self._out = self._out, Outcomes()
        return marks

    def return_marks(self, marks: Outcomes, retry_in: float | None = None) -> None:
        """Outcomes :meth:`take_marks` gave that were not written: written later (after
        ``retry_in`` seconds, or ``MARK_DELAY``), before any newer."""
        if marks:
            marks.before(self._out)
            self._flush_in(self.MARK_DELAY if retry_in is None else retry_in)

    def flush(self) -> None:
        """Write the outcomes known so far, in one transaction."""
        marks = self.take_marks()
        if not marks:
            return
        try:
            self.store.mark_many(marks)
        except StoreError as err:  # kept, tried again; sent again after a restart if never written
            log.error("%s; retrying in 1 s", err)
            self.return_marks(marks, retry_in=1.0)

    # ---- sending ---------------------------------------------------------------------

    def backoff(self, attempts: int) -> float:
        """The exponential backoff of the older settings (backoff_initial, backoff_max)."""
        cap = min(self.config.backoff_max, self.config.backoff_initial * 2 ** (attempts - 1))
        return self.rng.uniform(cap / 2, cap)

    def retry_delay(self, attempts: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt once ``attempts`` have failed (None: give
        up), at least ``retry_after`` (the receiver's Retry-After), within the longest wait
        the schedule has and ``MAX_RETRY_AFTER``."""
        schedule = self.config.schedule
        if schedule is None:
            if attempts >= self.config.max_attempts:
                return None
            wait, longest = self.backoff(attempts), self.config.backoff_max
        else:
            if attempts >= len(schedule):
                return None
            wait, longest = schedule[attempts] * self.rng.uniform(1.0, 1.0 + self.JITTER), max(schedule)
        if retry_after is not None:
            wait = max(wait, min(retry_after, longest, self.MAX_RETRY_AFTER))
        return wait

    # ---- disabling -------------------------------------------------------------------

    def _failed_attempt(self, sub: Subscription, now: float) -> str | None:
        """Note a failed attempt; why the subscription is to be disabled now, if it is."""
        since = self._failing.get(sub.id)
        if since is None:
            self._failing[sub.id] = now
            self._out.failing.append((now, sub.id))
            since = now
        limit = self.config.disable_after
        if limit is not None and now - since >= limit:
            return f"every delivery failed for {_span(now - since)} (delivery.disable_after: {_span(limit)})"
        return None

    def _disable(self, sub: Subscription, kind: str, reason: str) -> None:
        """Disable a subscription and fail its pending deliveries (kept, recoverable)."""
        self.flush()  # what is known so far (this delivery's outcome too) first
        self._failing.pop(sub.id, None)
        try:
            failed = self.store.disable_failing(sub.id, reason)
        except StoreError as err:
            log.error("%s", err)
            return
        q = self._queues.get(sub.id)
        if q is not None:
            for d in q.items:
                self._known.discard(d.id)
            q.items.clear()
            q.spilled = False
        self.disabled[kind] += 1
        log.warning("subscription %s (extension %s, %s) disabled: %s; %d pending deliveries failed "
                    "(enable it with POST /extension/%s/event/%s/enable, then resend them with .../recover)",
                    sub.id, sub.extension_id, sub.url, reason, failed, sub.extension_id, sub.id)  # fmt: skip
        if self.on_status is not None:
            self.on_status(sub, False, reason)

    def enabled(self, sub: Subscription) -> None:
        """A subscription was enabled again (by the API): its failing clock starts afresh."""
        self._failing.pop(sub.id, None)
        if self.on_status is not None:
            self.on_status(sub, True, None)

    async def _work(self, sub_id: int, q: _Queue) -> None:
        while True:
            if not q.items:
                if not q.spilled:
                    return
                self.flush()
                self._load(sub_id, q)
                if not q.items:
                    return
            if not self.holds(sub_id):  # its lease passed (or may have): another bridge sends it
                self._drop(sub_id)
                return
            sub = self.store.subscription_by_id(sub_id)
            if sub is not None and sub.ordering == "parallel":
                await self._parallel(sub, q)
                continue
            delivery = q.items.popleft()
            wait = delivery.next_at - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            again = await self._attempt(delivery)
            if again is not None:
                q.items.appendleft(again)  # its retry goes before anything newer
            else:
                self._known.discard(delivery.id)

    async def _parallel(self, sub: Subscription, q: _Queue) -> None:
        """Start one task for the oldest queued delivery once fewer than
        ``sub.max_in_flight`` requests of the subscription are in flight."""
        if q.slots is None or q.slots_size != sub.max_in_flight:
            q.slots, q.slots_size = asyncio.Semaphore(sub.max_in_flight), sub.max_in_flight
        slots = q.slots
        await slots.acquire()
        if not q.items:  # sent by another worker while this one waited
            slots.release()
            return
        task = asyncio.ensure_future(self._one(q.items.popleft(), slots))
        q.in_flight.add(task)
        task.add_done_callback(q.in_flight.discard)

    async def _one(self, d: Delivery, slots: asyncio.Semaphore) -> None:
        """A delivery of a parallel subscription, retries included, holding one of its slots
        while a request is in flight (not while a retry waits)."""
        held = True
        try:
            while True:
                wait = d.next_at - self.clock()
                if wait > 0:
                    slots.release()
                    held = False
                    await asyncio.sleep(wait)
                    await slots.acquire()
                    held = True
                if not self.holds(d.subscription_id):  # its lease passed: left pending for the holder
                    return
                again = await self._attempt(d)
                if again is None:
                    return
                d = again
        finally:
            if held:
                slots.release()
            self._known.discard(d.id)

    async def _send(self, req: WebhookRequest) -> tuple[Answer | None, str | None]:
        """One HTTP request: (answer, None) or (None, what went wrong)."""
        config = self.config
        try:
            answer = await self.client.request(
                req.method, req.url, req.headers, req.body,
                connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
                max_body=65536,  # read a little, never a huge body
                total_timeout=config.total_timeout,
            )  # fmt: skip
            return answer, None
        except SsrfBlocked as err:
            return None, str(err)
        except (HttpError, OSError, TimeoutError, ValueError) as err:
            return None, f"{type(err).__name__}: {err}"

    def _literal_refusal(self, url: str) -> str | None:
        """Why the URL's host, when an IP literal, is refused (IP literals are not resolved,
        so the resolver cannot guard them); None for names and allowed ones."""
        if url not in self._literal:
            if len(self._literal) >= 10_000:
                self._literal.clear()  # subscriptions come and go: never grow without bound
            host = (urlsplit(url).hostname or "").strip("[]")
            self._literal[url] = refusal(host, self.allow) if is_ip(host) else None
        return self._literal[url]

    async def _attempt(self, d: Delivery) -> Delivery | None:
        """One attempt; the delivery to try again later (a retry), or None when it is done."""
        sub = self.store.subscription_by_id(d.subscription_id)
        if sub is None and self.owner is not None:  # made by another bridge's API just now?
            self.store.refresh()
            sub = self.store.subscription_by_id(d.subscription_id)
        if sub is None or not sub.enabled:
            self._mark(d.id, "failed", d.attempts, error="subscription deleted or disabled")
            self.outcomes["failed"] += 1
            return None
        limiter = self._queue(sub.id).limit(sub.rate_limit)
        if limiter is not None:
            await limiter.acquire()
        now = self.clock()
        req = build_request(sub.method, sub.url, d.event, d.idempotency_key, self.secrets(sub, now), int(now))
        attempts = d.attempts + 1
        answer: Answer | None = None
        error: str | None = None
        at = self.clock()
        started = time.monotonic()
        literal = self._literal_refusal(sub.url)  # the subscription's URL: GET adds a query
        async with self._sem:
            if literal:
                error = f"refused by the SSRF guard: {literal} (allow it with delivery.allow_networks)"
            else:
                answer, error = await self._send(req)
        took = time.monotonic() - started
        status = None if answer is None else answer.status
        self._out.attempts.append((d.id, sub.id, at, status, round(took * 1000, 3), error,
                                   b"" if answer is None else answer.body[:BODY_KEPT]))  # fmt: skip
        again: Delivery | None = None
        disable: tuple[str, str] | None = None
        if status is not None and 200 <= status < 300:
            self._mark(d.id, "delivered", attempts, status=status)
            outcome = "delivered"
            if self._failing.pop(sub.id, None) is not None:
                self._out.failing.append((None, sub.id))  # a success: no longer failing
            event_time = d.event.get("EventTime")
            if self.on_delivered is not None and isinstance(event_time, int):
                self.on_delivered(max(0.0, self.clock() - event_time / 1e6))
        elif status == 410:
            self._mark(d.id, "failed", attempts, status=status, error="410 Gone: subscription disabled")
            outcome = "disabled"
            disable = ("gone", "receiver answered 410 Gone")
        else:
            now = self.clock()
            why = self._failed_attempt(sub, now)
            delay: float | None = None
            if why is not None:
                disable = ("failing", why)
            elif (status is None or status == 429 or status >= 500) \
                    and not (error or "").startswith("refused by the SSRF guard"):  # fmt: skip
                honoured = answer.retry_after if answer is not None and status in (429, 503) else None
                delay = self.retry_delay(attempts, honoured)
            if delay is not None:
                next_at = now + delay
                self._mark(d.id, "pending", attempts, next_at, status, error)
                again = dataclasses.replace(d, attempts=attempts, next_at=next_at)
                outcome = "retry"
            else:
                self._mark(d.id, "failed", attempts, status=status, error=error or f"HTTP {status}")
                outcome = "failed"
        self.outcomes[outcome] += 1
        if disable is not None:
            self._disable(sub, *disable)
        if self.on_attempt is not None:
            event_time = d.event.get("EventTime")
            since_event = (max(0.0, self.clock() - event_time / 1e6)
                           if outcome == "delivered" and isinstance(event_time, int) else None)  # fmt: skip
            self.on_attempt(sub.id, outcome == "delivered", took, status, error, since_event)
        if outcome == "delivered":
            if log.isEnabledFor(logging.DEBUG):
                log.debug("delivery %s to subscription %s: delivered (status %s, attempt %s, %.3f s)",
                          d.id, sub.id, status, attempts, took)  # fmt: skip
        else:
            log.log(logging.INFO if outcome == "retry" else logging.WARNING,
                    "delivery %s to subscription %s: %s (status %s, attempt %s, %.3f s)%s",
                    d.id, sub.id, outcome, status, attempts, took, f": {error}" if error else "")  # fmt: skip
        return again


def _span(seconds: float) -> str:
    """A duration for a log line: 5d, 12h, 30m or 45s (the largest unit that fits)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}" if seconds % size == 0 else f"{seconds / size:.1f}{unit}"
    return f"{seconds:g}s"
