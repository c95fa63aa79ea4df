"""The pool demo: a scripted workload against fake models, so swaps can be watched.

Six fake models (chat, code, a pinned embedder, speech with a TTL, and two "heavy"
models that exclude each other) share a 16 GiB budget on a fake ``cuda:0``: more
than fits at once. Several clients send a seeded random stream of requests with
``async with pool.use(...)``; the pool loads, evicts and swaps by the chosen strategy.
No GPU and no weights: every load is a ``FakeBackend`` sleep of 0.2-0.8 s.

``run_demo`` returns ``pool.get_resource_status()`` plus a ``"demo"`` section with
the workload's own counts. Rendering is the caller's business (``modelpool demo``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelpool.backends.fake import FakeBackend
from modelpool.config import ModelSpec
from modelpool.core.events import EventKind, PoolEvent, unload_cause
from modelpool.core.pool import ModelPool
from modelpool.errors import ModelPoolError

DEMO_DEVICE = "cuda:0"
DEMO_BUDGET = "16GiB"


def _fake(model_id: str, memory: str, load_seconds: float, **fields: Any) -> ModelSpec:
    options = {"load_seconds": load_seconds}
    return ModelSpec(
        id=model_id, backend="fake", memory=memory, device=DEMO_DEVICE, options=options, **fields
    )


DEMO_MODELS: tuple[ModelSpec, ...] = (
    _fake("chat-7b", "4.5GiB", 0.4, tags=("chat", "general"), priority=3),
    _fake("coder-7b", "4.5GiB", 0.4, tags=("code",)),
    _fake("embedder", "0.5GiB", 0.2, tags=("embedding",), pinned=True, priority=1),
    _fake("sdxl", "7GiB", 0.7, tags=("image",), group="heavy"),
    _fake("llm-14b", "9GiB", 0.8, tags=("chat", "reasoning"), group="heavy"),
    _fake("tts", "3GiB", 0.3, tags=("speech",), ttl=2.0),
)

# How often each model is asked for: chat and code dominate, the heavy ones are rarer.
DEMO_WEIGHTS: dict[str, float] = {
    "chat-7b": 0.32,
    "coder-7b": 0.22,
    "embedder": 0.16,
    "sdxl": 0.1,
    "llm-14b": 0.1,
    "tts": 0.1,
}

Update = Callable[["DemoProgress"], None]


@dataclass
class DemoProgress:
    """What a live view shows: the pool's status, recent events and the workload counts."""

    status: dict[str, Any]
    events: list[PoolEvent]
    started: float
    """``time.monotonic()`` when the demo began: the pool's clock, as in ``PoolEvent.at``."""
    elapsed: float
    seconds: float
    requests: int
    completed: int
    failed: int
    evictions: Counter[str] = field(default_factory=Counter)


def eviction_reason(event: PoolEvent) -> str:
    """The category of an unload: ``evicted``, ``ttl``, ``stopping``, ``requested``..."""
    return unload_cause(str(event.detail.get("reason", "unknown")))


def build_pool(strategy: str = "hybrid", backend: FakeBackend | None = None) -> ModelPool:
    """The demo's pool; ``PluginNotFound`` if ``strategy`` is not a known policy."""
    return ModelPool(
        DEMO_MODELS,
        budgets={DEMO_DEVICE: DEMO_BUDGET},
        strategy=strategy,
        backends={"fake": backend or FakeBackend()},
        reap_interval=0.25,
        wait_timeout=30.0,
    )


@dataclass
class _Workload:
    rng: random.Random
    deadline: float
    requests: int = 0
    completed: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def pick(self) -> str:
        names = list(DEMO_WEIGHTS)
        return self.rng.choices(names, weights=[DEMO_WEIGHTS[n] for n in names])[0]


async def _client(pool: ModelPool, number: int, work: _Workload) -> None:
    session = 0  # a client sends a few requests to one model, then moves on
    model = ""
    while time.monotonic() < work.deadline:
        if session == 0:
            model, session = work.pick(), work.rng.randint(1, 6)
        session -= 1
        hold = work.rng.uniform(0.05, 0.35)  # the "inference"
        think = work.rng.uniform(0.0, 0.15)
        work.requests += 1
        try:
            async with pool.use(model, task_id=f"client-{number}-{work.requests}") as lease:
                lease.obj(f"request {work.requests}")
                await asyncio.sleep(hold)
        except ModelPoolError as error:
            work.failed += 1
            work.errors[type(error).__name__] += 1
        else:
            work.completed += 1
        await asyncio.sleep(think)


async def run_demo(
    seconds: float = 8.0,
    *,
    strategy: str = "hybrid",
    seed: int = 0,
    clients: int = 4,
    rng: random.Random | None = None,
    on_update: Update | None = None,
    refresh: float = 0.25,
) -> dict[str, Any]:
    """Replay a seeded random workload for ``seconds``; return the final status dict.

    ``rng`` (default ``random.Random(seed)``) draws the models, hold and think times.
    ``on_update`` is called about every ``refresh`` seconds and once at the end.
    """
    pool = build_pool(strategy)
    work = _Workload(rng or random.Random(seed), deadline=0.0)
    evictions: Counter[str] = Counter()
    loads = 0

    def count(event: PoolEvent) -> None:
        nonlocal loads
        if event.kind is EventKind.UNLOAD_STARTED:
            evictions[eviction_reason(event)] += 1
        elif event.kind is EventKind.LOADED:
            loads += 1

    events = pool.events()  # subscribes now: no event before start() is missed

    async def watch() -> None:
        async for event in events:
            count(event)

    started = time.monotonic()

    def progress() -> DemoProgress:
        return DemoProgress(
            pool.get_resource_status(),
            pool.recent_events(12),
            started,
            time.monotonic() - started,
            seconds,
            work.requests,
            work.completed,
            work.failed,
            Counter(evictions),
        )

    async def ticker() -> None:
        while on_update is not None:
            on_update(progress())
            await asyncio.sleep(refresh)

    watcher = asyncio.create_task(watch())
    await pool.start()
    ticking = asyncio.create_task(ticker())
    try:
        work.deadline = time.monotonic() + seconds
        await asyncio.gather(*(_client(pool, n, work) for n in range(clients)))
        ticking.cancel()
        status = pool.get_resource_status()
        final_loads, final_evictions = loads, dict(evictions)  # before stop() unloads all
        if on_update is not None:
            on_update(progress())
    finally:
        ticking.cancel()
        await pool.stop()
        await watcher
    models = status["model_resources"]
    hits = sum(m["hits"] for m in models.values())
    misses = sum(m["misses"] for m in models.values())
    status["demo"] = {
        "seconds": seconds,
        "elapsed": round(time.monotonic() - started, 3),
        "strategy": strategy,
        "seed": seed,
        "clients": clients,
        "budget": {DEMO_DEVICE: DEMO_BUDGET},
        "requests": work.requests,
        "completed": work.completed,
        "failed": work.failed,
        "errors": dict(work.errors),
        "hits": hits,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        "loads": final_loads,
        "evictions": final_evictions,
    }
    return status
