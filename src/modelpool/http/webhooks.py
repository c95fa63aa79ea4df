"""Alert webhooks: every alert the health monitor sends, POSTed to each receiver as JSON.

The path a request takes never waits on a receiver. A ``WebhookSender`` is one of the
monitor's alert handlers, and the handler only filters by level, formats the payload
(``monitor.alert_payload``) and puts it in the sender's queue: no await, no I/O. One
task per webhook, on the server's loop, takes the alerts out one at a time and POSTs
each, so at most one connection per receiver is open and nothing piles up behind a
slow or dead one but the queue, which is bounded.

Each alert is tried ``attempts`` times, each try cut off after ``timeout``; between
tries the sender waits ``backoff``, then twice that, and so on up to ``max_backoff``
(``retry_delays``). Every alert ends in one outcome, counted by host:

- ``sent``: the receiver answered 2xx;
- ``failed``: given up, after the last try, or at once for an answer that trying
  again cannot change (a 3xx, which is not followed, or a 4xx but 408, 425 and 429);
- ``dropped``: pushed out of a full queue by a newer alert (the oldest goes), or
  still waiting when the server stopped.

URLs and headers may hold secrets (Slack's webhook URLs do): logs and metrics name a
webhook by its host alone, and a transport error by its type, not its message (which
can quote the URL).

The clock and the sleep are injected, so the retry schedule runs on a manual clock in
tests, with ``FakeTransport`` (a receiver in memory) in place of ``AiohttpTransport``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import aiohttp

from modelpool.config import AlertSettings, WebhookSettings
from modelpool.monitor.alert_payload import alert_payload, wanted
from modelpool.monitor.health import Alert, HealthMonitor

__all__ = [
    "Outcome",
    "OUTCOMES",
    "retry_delays",
    "WebhookTransport",
    "AiohttpTransport",
    "FakeTransport",
    "WebhookSender",
    "Webhooks",
]

log = logging.getLogger("modelpool.webhooks")

Outcome = Literal["sent", "failed", "dropped"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "failed", "dropped")
OnOutcome = Callable[[str, Outcome], None]
"""Told ``(host, outcome)`` once for every alert that leaves a sender's hands."""
Sleep = Callable[[float], Awaitable[None]]

RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""Client errors that may pass (timeout, too early, too many requests); 5xx are retried too."""


def retry_delays(attempts: int, first: float, cap: float) -> list[float]:
    """Seconds to wait before each retry of ``attempts`` tries: ``first``, doubling,
    at most ``cap`` each (``attempts - 1`` of them)."""
    return [min(cap, first * 2**retry) for retry in range(max(0, attempts - 1))]


class WebhookTransport(Protocol):
    """How a payload reaches a receiver. ``post`` returns the answer's status and raises
    for a transport failure; the sender cuts it off after the webhook's ``timeout``."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """One aiohttp session for every webhook of a server, made on first use (a session
    belongs to the running loop). Apart from the model servers' (``proxy.Upstream``):
    a receiver that hangs must not hold a connection requests need."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),  # the sender times each try
                headers={"User-Agent": "modelpool-webhooks"},
            )
        sent = {"Content-Type": "application/json", **headers}
        async with self._session.post(url, data=body, headers=sent, allow_redirects=False) as reply:
            await reply.read()  # the whole answer, so the connection can be reused
            return reply.status

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass
class FakeTransport:
    """A receiver in memory, for tests. Each POST is recorded in ``posts`` and answered
    with the next of ``answers`` (a status, or an exception to raise; the last one
    repeats). While ``hang`` is set, a POST waits until it is cleared (or cut off)."""

    answers: list[int | Exception] = field(default_factory=lambda: [200])
    hang: bool = False
    posts: list[tuple[str, dict[str, object], dict[str, str]]] = field(
        default_factory=list, init=False
    )
    in_flight: int = field(default=0, init=False)
    most_in_flight: int = field(default=0, init=False)
    closed: bool = field(default=False, init=False)
    _released: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.posts.append((url, json.loads(body), dict(headers)))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hang:
                await self._released.wait()
            answer = self.answers[min(len(self.posts), len(self.answers)) - 1]
        finally:
            self.in_flight -= 1
        if isinstance(answer, Exception):
            raise answer
        return answer

    def release(self) -> None:
        """End the hang: waiting and later POSTs are answered."""
        self.hang = False
        self._released.set()

    async def aclose(self) -> None:
        self.closed = True


class WebhookSender:
    """One webhook: its queue, and the loop (``run``) that delivers what is in it.

    Call it with an alert (it is an ``AlertHandler``): from the loop ``run`` runs on, or
    from any thread once ``run`` has started. ``counts`` holds each outcome so far.
    """

    def __init__(
        self,
        settings: WebhookSettings,
        transport: WebhookTransport,
        *,
        on_outcome: OnOutcome | None = None,
        wall: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.host = settings.host
        self.counts: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
        self._transport = transport
        self._on_outcome = on_outcome
        self._wall, self._sleep = wall, sleep
        self._url = settings.url.get_secret_value()
        self._headers = {key: value.get_secret_value() for key, value in settings.headers.items()}
        self._delays = retry_delays(settings.attempts, settings.backoff, settings.max_backoff)
        self._queue: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        """Alerts waiting (the one being delivered is not among them)."""
        return len(self._queue)

    def __call__(self, alert: Alert) -> None:
        if self._closed or not wanted(alert, self.settings.levels):
            return
        body = json.dumps(alert_payload(alert, self._wall())).encode()
        loop = self._loop
        if loop is None or _running_loop() is loop:
            self._put(body)
        else:  # the queue belongs to the loop: hand the payload over
            loop.call_soon_threadsafe(self._put, body)

    async def run(self) -> None:
        """Deliver queued alerts one at a time, until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            await self.deliver(self._queue.popleft())

    async def deliver(self, body: bytes) -> Outcome:
        """Try one payload until it is sent or given up; its outcome, counted."""
        reason = ""
        for attempt in range(self.settings.attempts):
            if attempt:
                await self._sleep(self._delays[attempt - 1])
            try:
                async with asyncio.timeout(self.settings.timeout):
                    status = await self._transport.post(self._url, body, self._headers)
            except TimeoutError:
                reason = f"no answer within {self.settings.timeout:g}s"
            except Exception as error:  # whatever the transport raises: try again
                reason = type(error).__name__  # its message may quote the URL
            else:
                if 200 <= status < 300:
                    return self._count("sent")
                reason = f"answered {status}"
                if status < 500 and status not in RETRYABLE_STATUSES:
                    break  # the same payload would be refused again
            log.debug("alert webhook %s: try %d failed (%s)", self.host, attempt + 1, reason)
        log.warning("alert webhook %s: gave up on an alert (%s)", self.host, reason)
        return self._count("failed")

    def close(self) -> int:
        """Take no more alerts; the ones still queued are dropped. How many were."""
        self._closed = True
        left = len(self._queue)
        self._queue.clear()
        for _ in range(left):
            self._count("dropped")
        return left

    def _put(self, body: bytes) -> None:
        if self._closed:
            return
        if len(self._queue) >= self.settings.queue:
            self._queue.popleft()
            self._count("dropped")
            log.warning(
                "alert webhook %s: queue full (%d), dropped the oldest alert",
                self.host,
                self.settings.queue,
            )
        self._queue.append(body)
        self._ready.set()

    def _count(self, outcome: Outcome) -> Outcome:
        self.counts[outcome] += 1
        if self._on_outcome is not None:
            self._on_outcome(self.host, outcome)
        return outcome


class Webhooks:
    """Every webhook of one server: a sender each, whose task runs on the server's loop
    from ``start`` to ``stop`` (the app's lifespan)."""

    def __init__(
        self,
        settings: AlertSettings,
        *,
        on_outcome: OnOutcome | None = None,
        transport: WebhookTransport | None = None,
        wall: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._transport = transport if transport is not None else AiohttpTransport()
        self.senders = [
            WebhookSender(hook, self._transport, on_outcome=on_outcome, wall=wall, sleep=sleep)
            for hook in settings.webhooks
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, monitor: HealthMonitor) -> None:
        """Hear ``monitor``'s alerts and start delivering them (on the running loop)."""
        for sender in self.senders:
            monitor.add_handler(sender)
            self._tasks.append(asyncio.create_task(sender.run(), name=f"webhook {sender.host}"))

    async def stop(self) -> None:
        """Stop delivering: a POST in flight is cut off, queued alerts are dropped."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for sender in self.senders:
            if left := sender.close():
                log.warning("alert webhook %s: %d alerts not sent at shutdown", sender.host, left)
        await self._transport.aclose()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
