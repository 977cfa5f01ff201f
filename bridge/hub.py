"""The live dashboard: fan every translated call event out to the browsers watching ``/dashboard``.

:class:`EventHub` keeps the latest events and a view of the calls in progress, and hands
each event to its subscribers; :func:`add_routes` serves the page (plain HTML/CSS/JS
shipped in ``bridge/static``, nothing from the network), its state as JSON, and a
server-sent event stream of the events as they happen.

The daemon must never wait for a browser: :meth:`EventHub.publish` is synchronous, never
blocks and never raises. A subscriber whose queue is full (a browser that stopped reading)
is dropped: its queue is emptied, gets :data:`CLOSED` and is forgotten, so its stream ends
and the browser's ``EventSource`` reconnects and starts again from the current state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Event types that are components of a call; voicemail and message events never open one.
CALL_EVENT_TYPES = frozenset({"dial-in", "dial-out", "answer", "hangup"})

# Put on a subscriber's queue (compare with ``is``) when the hub lets go of it: stop reading.
CLOSED: dict[str, Any] = {"closed": True}

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE_SECONDS = 15.0
# How often an idle stream looks whether its client has gone (writes only fail when tried).
DISCONNECT_POLL_SECONDS = 1.0


@dataclass(slots=True)
class _Call:
    call_id: Any
    since: Any
    caller: Any
    called: Any
    answered: bool = False
    extensions: set[int] = field(default_factory=set)
    open_subcalls: set[Any] = field(default_factory=set)

    def view(self) -> dict[str, Any]:
        return {
            "CallID": self.call_id,
            "EventTime": self.since,
            "CallerIDNum": self.caller,
            "CalledNumber": self.called,
            "extensions": sorted(self.extensions),
            "answered": self.answered,
        }


class EventHub:
    """The latest events, the calls in progress, and the subscribers to new events.

    Use it from the event loop's thread only (``asyncio.Queue`` is not thread-safe).
    Memory is bounded: ``history`` events, ``queue_size`` per subscriber, and at most
    :attr:`MAX_ACTIVE_CALLS` calls in progress (the oldest dropped past that, so a call
    whose hangup never comes cannot grow the view without bound).
    """

    MAX_ACTIVE_CALLS = 100_000

    def __init__(self, history: int = 100, queue_size: int = 1000) -> None:
        if history < 0 or queue_size < 1:
            raise ValueError("history must be >= 0 and queue_size >= 1")
        self._recent: deque[dict[str, Any]] = deque(maxlen=history)
        self._queue_size = queue_size
        self._calls: OrderedDict[Any, _Call] = OrderedDict()
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped_subscribers = 0

    # -- events in ----------------------------------------------------------------------

    def publish(self, extension_id: int, event: dict[str, Any]) -> None:
        """Record one event and offer it to every subscriber; never blocks, never raises."""
        try:
            item = {"extension_id": extension_id, "event": dict(event)}
            self._recent.append(item)
        except Exception:  # the daemon's event path must not fail because of the dashboard
            log.exception("dashboard hub could not take an event from extension %r", extension_id)
            return
        try:
            self._track(extension_id, event)
        except Exception:
            log.exception("dashboard hub could not follow the call of %r", event)
        for q in list(self._subscribers):
            try:
                q.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped_subscribers += 1
                log.warning("dashboard subscriber is %d events behind: dropped", q.qsize())
                self.close(q)

    def _track(self, extension_id: int, event: dict[str, Any]) -> None:
        kind = event.get("EventType")
        call_id = event.get("CallID")
        if kind not in CALL_EVENT_TYPES or not isinstance(call_id, str | int) or call_id == "":
            return
        subcall = event.get("SubCallID")
        if not isinstance(subcall, str | int) or subcall == "":
            subcall = call_id
        call = self._calls.get(call_id)
        if kind == "hangup":
            if call is None:
                return  # a hangup never opens a call
            call.open_subcalls.discard(subcall)
            if not call.open_subcalls:
                del self._calls[call_id]
                return
        else:
            if call is None:
                call = _Call(
                    call_id, event.get("EventTime"), event.get("CallerIDNum"), event.get("CalledNumber")
                )
                self._calls[call_id] = call
                while len(self._calls) > self.MAX_ACTIVE_CALLS:
                    old_id, _ = self._calls.popitem(last=False)
                    log.warning(
                        "dashboard: more than %d calls in progress, forgot %r", self.MAX_ACTIVE_CALLS, old_id
                    )
            call.open_subcalls.add(subcall)
            if call.caller is None:
                call.caller = event.get("CallerIDNum")
            if call.called is None:
                call.called = event.get("CalledNumber")
        call.extensions.add(extension_id)
        if kind == "answer" or event.get("CallStatus") == "ANSWER":
            call.answered = True

    # -- views --------------------------------------------------------------------------

    def active_calls(self) -> list[dict[str, Any]]:
        """The calls in progress, oldest first: CallID, EventTime (first event), CallerIDNum,
        CalledNumber, extensions (sorted ids) and answered (any component answered)."""
        return [call.view() for call in self._calls.values()]

    def active_call(self, call_id: Any) -> dict[str, Any] | None:
        """One call in progress as in :meth:`active_calls`, or None when it is not in progress."""
        call = self._calls.get(call_id)
        return None if call is None else call.view()

    def recent(self) -> list[dict[str, Any]]:
        """The latest events, oldest first, each ``{"extension_id": int, "event": {...}}``."""
        return list(self._recent)

    # -- subscribers --------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new queue that gets every event published from now on, until it is unsubscribed.

        Read it promptly: once it holds ``queue_size`` events the hub drops it, and it then
        receives :data:`CLOSED` (compare with ``is``) and nothing more.
        """
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=self._queue_size)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop giving events to ``q``; unknown or already dropped queues are ignored."""
        self._subscribers.discard(q)

    def close(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        """Unsubscribe ``q`` and wake its reader: its pending events are discarded, then :data:`CLOSED`."""
        self._subscribers.discard(q)
        while True:
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                break
        q.put_nowait(CLOSED)

    @property
    def subscriber_count(self) -> int:
        """How many queues are subscribed now."""
        return len(self._subscribers)


# -- HTTP -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Streams:
    """The open ``/dashboard/stream`` responses of one app, so that its shutdown can end them."""

    queues: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    stopping: bool = False


HUB_KEY = web.AppKey("dashboard_hub", EventHub)
#: who looks (a :class:`bridge.api.common.Principal`, set by the console's guard): the
#: state and the stream keep to its extensions; without it, everything is shown
SCOPE_KEY = web.RequestKey("console_scope", object)
_STREAMS_KEY = web.AppKey("dashboard_streams", _Streams)
_FILES = {
    "/dashboard": ("dashboard.html", "text/html"),
    "/dashboard/app.js": ("dashboard.js", "text/javascript"),
    "/dashboard/app.css": ("dashboard.css", "text/css"),
}


def _json(value: Any) -> str:
    # one line (newlines in strings are escaped), so it fits one ``data:`` field
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _extensions(request: web.Request) -> frozenset[int] | None:
    """The extensions the request may see (None: all)."""
    principal = request.get(SCOPE_KEY)
    extensions = getattr(principal, "extensions", None)
    return extensions if isinstance(extensions, frozenset) else None


def _scoped_call(call: dict[str, Any], exts: frozenset[int] | None) -> dict[str, Any] | None:
    if exts is None:
        return call
    mine = [e for e in call["extensions"] if e in exts]
    return {**call, "extensions": mine} if mine else None


def _state(hub: EventHub, exts: frozenset[int] | None = None) -> dict[str, Any]:
    if exts is None:
        return {"active_calls": hub.active_calls(), "recent": hub.recent()}
    calls = [c for c in (_scoped_call(c, exts) for c in hub.active_calls()) if c is not None]
    return {"active_calls": calls, "recent": [i for i in hub.recent() if i["extension_id"] in exts]}


def _static(name: str, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=(STATIC / name).read_bytes(),
            content_type=content_type,
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    return handler


async def _state_handler(request: web.Request) -> web.Response:
    return web.Response(
        text=_json(_state(request.app[HUB_KEY], _extensions(request))),
        content_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _stream(request: web.Request) -> web.StreamResponse:
    """``event: state`` first, then one ``event: call`` per event, until the client or the app goes.

    Each ``call`` message's data is ``{"extension_id", "event", "active_call"}``, where
    ``active_call`` is the event's call as in ``EventHub.active_calls()`` when the message
    is sent, or null when that call is not in progress (any more).
    """
    hub = request.app[HUB_KEY]
    streams = request.app[_STREAMS_KEY]
    exts = _extensions(request)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold the events back
        }
    )
    q = hub.subscribe()  # before the state is taken, so that no event falls between the two
    streams.queues.add(q)
    try:
        await resp.prepare(request)
        if streams.stopping:
            return resp
        await resp.write(f"event: state\ndata: {_json(_state(hub, exts))}\nretry: 2000\n\n".encode())
        last_write = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(DISCONNECT_POLL_SECONDS):
                    item = await q.get()
            except TimeoutError:
                if _gone(request):
                    break
                if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                    await resp.write(b": keepalive\n\n")
                    last_write = time.monotonic()
                continue
            if item is CLOSED:
                break
            if exts is not None and item["extension_id"] not in exts:
                continue
            call_id = item["event"].get("CallID")
            call = None if call_id is None else hub.active_call(call_id)
            data = {**item, "active_call": None if call is None else _scoped_call(call, exts)}
            await resp.write(f"event: call\ndata: {_json(data)}\n\n".encode())
            last_write = time.monotonic()
    except ConnectionError:
        pass  # the client went away between two looks: nothing to tell anyone
    finally:
        hub.unsubscribe(q)
        streams.queues.discard(q)
    return resp


async def _on_shutdown(app: web.Application) -> None:
    """Wake every stream of this app so that aiohttp's shutdown does not wait for them."""
    hub, streams = app[HUB_KEY], app[_STREAMS_KEY]
    streams.stopping = True
    for q in list(streams.queues):
        hub.close(q)


def add_routes(app: web.Application, hub: EventHub) -> None:
    """``GET /dashboard`` (the page), ``/dashboard/app.js``, ``/dashboard/app.css``,
    ``/dashboard/state`` (JSON) and ``/dashboard/stream`` (server-sent events).

    No bearer token is asked for here; the API's auth middleware does not check ``/dashboard``.
    """
    app[HUB_KEY] = hub
    app[_STREAMS_KEY] = _Streams()
    for path, (name, content_type) in _FILES.items():
        app.router.add_get(path, _static(name, content_type))
    app.router.add_get("/dashboard/state", _state_handler)
    app.router.add_get("/dashboard/stream", _stream, allow_head=False)
    app.on_shutdown.append(_on_shutdown)
