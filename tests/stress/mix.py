"""The stress mix: many clients chatting, loading and unloading real process models
through a real ``modelpool serve``, while model servers are killed under them.

Shared by ``tests/stress/test_serve_stress.py`` (about a minute, in ``make test``) and
``bench/soak.py`` (an hour by default): the same config, clients, crashes and books.

- ``config(tag)``: ``MODELS`` tiny servers (``tests/integration/servers/tiny_server.py``)
  of ``MODEL_MEMORY`` each under a budget for half of them, so requests keep swapping.
- ``Mix.run()``: ``clients`` concurrent clients, each a loop bounded in count and time
  over chat (the official ``openai`` client, 80%), admin load (10%) and admin unload
  (10%), each client favouring one model; beside them a crasher SIGKILLs the main
  process of a random model server every ``crash_every`` seconds. Every answer is
  tallied; one that is neither a success nor a refusal the server documents for the
  situation (502 from a killed server, 503 while loading fails or memory is short) is
  a problem, and so is every transport error.
- ``books(url, serve)``: what must hold once the clients are done: the ledger's
  committed bytes are exactly the resident models' bytes, no lease, reservation,
  leaving bytes or waiter is left, and the live processes under the server are exactly
  one per ready model. ``settled_books`` polls until that holds (bounded).
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
MODELS = 8
MODEL_MEMORY = 100 * 10**6
BUDGET = MODELS // 2 * MODEL_MEMORY
REQUEST_TIMEOUT = 60.0
"""A client's limit per request: the pool's wait_timeout (20 s) plus a load, with room."""

EXPECTED_REFUSALS = {
    # A model server killed under a request in flight.
    (502, "upstream_unavailable"),
    # Its model failed (killed, in its restart backoff), or every resident model is leased.
    (503, "load_failed"),
    (503, "insufficient_memory"),
    (503, "wait_timeout"),
}


def model_ids() -> list[str]:
    return [f"m{i}" for i in range(MODELS)]


def config(tag: str) -> dict[str, Any]:
    """``modelpool serve``'s config: ``MODELS`` tiny servers, a budget for half of them.

    ``tag`` goes on every server's command line, so a run finds its own processes."""
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}", "--tag", tag]
    model = {
        "backend": "process",
        "command": command,
        "memory": MODEL_MEMORY,
        "device": "cpu",
        "ready_timeout": 30,
        "stop_grace": 2,
    }
    return {
        "server": {"drain_timeout": 5},
        "pool": {
            "budgets": {"cpu": BUDGET},
            "probe": "static",  # the books alone: other programs' memory does not move them
            "wait_timeout": 20,
            "restart_backoff": 0.2,
            "max_restart_backoff": 2,
            "max_failures": 1000,  # a killed model keeps coming back on demand
        },
        "models": {model_id: dict(model) for model_id in model_ids()},
    }


def model_servers(serve: int, tag: str) -> dict[str, list[psutil.Process]]:
    """The live model servers under ``serve``, by model id (read from ``--name``)."""
    found: dict[str, list[psutil.Process]] = {}
    for process in descendants(serve):
        try:
            argv = process.cmdline()
        except psutil.NoSuchProcess:
            continue
        if tag in argv and "--name" in argv:
            found.setdefault(argv[argv.index("--name") + 1], []).append(process)
    return found


def descendants(pid: int) -> list[psutil.Process]:
    """Every live (not zombie) process under ``pid``."""
    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in below if _running(p)]


def tagged(tag: str) -> list[psutil.Process]:
    """Every live process on the machine with ``tag`` on its command line, wherever its
    parent is (an orphan is re-parented to pid 1)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if tag in (process.info["cmdline"] or []) and _running(process):
            found.append(process)
    return found


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class Mix:
    """One run of the mix against the server at ``url`` (whose process is ``serve``)."""

    url: str
    serve: int
    tag: str
    clients: int = 32
    seconds: float = 40.0
    """How long the clients start new requests (one in flight may finish later)."""
    max_requests: int = 1000
    """Per client: the other bound of its loop."""
    crash_every: float = 4.0
    seed: int = 0
    tally: Counter[str] = field(default_factory=Counter)
    """Outcomes by ``"<op> <status>[ <code>]"``, and ``"crash"`` per server killed."""
    problems: list[str] = field(default_factory=list)
    """Outcomes the server must never give, each with what was asked."""
    latencies: list[tuple[float, float]] = field(default_factory=list)
    """``(finished at, seconds)`` of every chat answered 200 (``time.monotonic``)."""

    async def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        limits = httpx.Limits(max_connections=self.clients * 2)
        async with (
            httpx.AsyncClient(base_url=self.url, timeout=REQUEST_TIMEOUT, limits=limits) as admin,
            openai.AsyncOpenAI(
                base_url=f"{self.url}/v1",
                api_key="unused",
                max_retries=0,  # every answer is tallied as it came
                timeout=REQUEST_TIMEOUT,
                http_client=httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits),
            ) as chat,
        ):
            clients = [
                self._client(i, admin, chat, deadline, random.Random(self.seed * 1000 + i))
                for i in range(self.clients)
            ]
            crasher = self._crasher(deadline, random.Random(self.seed))
            await asyncio.gather(*clients, crasher)

    async def _client(
        self,
        number: int,
        admin: httpx.AsyncClient,
        chat: openai.AsyncOpenAI,
        deadline: float,
        rng: random.Random,
    ) -> None:
        models = model_ids()
        favourite = models[number % len(models)]
        for request in range(self.max_requests):
            if time.monotonic() >= deadline:
                return
            model = favourite if rng.random() < 0.6 else rng.choice(models)
            roll = rng.random()
            if roll < 0.8:
                await self._chat(chat, model, f"client {number} request {request}")
            elif roll < 0.9:
                await self._admin(admin, "load", model)
            else:
                await self._admin(admin, "unload", model)

    async def _chat(self, chat: openai.AsyncOpenAI, model: str, text: str) -> None:
        started = time.monotonic()
        try:
            answer = await chat.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}]
            )
        except openai.APIStatusError as error:
            self._refused("chat", model, error.status_code, error.body)
            return
        except openai.APIError as error:  # no answer at all: connection or timeout
            self.problems.append(f"chat {model}: {type(error).__name__}: {error}")
            return
        finished = time.monotonic()
        content = answer.choices[0].message.content
        if content != f"{model}: {text}":
            self.problems.append(f"chat {model}: answered {content!r} to {text!r}")
            return
        self.tally["chat 200"] += 1
        self.latencies.append((finished, finished - started))

    async def _admin(self, admin: httpx.AsyncClient, operation: str, model: str) -> None:
        try:
            answer = await admin.post(f"/admin/models/{model}/{operation}")
        except httpx.HTTPError as error:
            self.problems.append(f"{operation} {model}: {type(error).__name__}: {error}")
            return
        if answer.status_code == 200:
            self.tally[f"{operation} 200"] += 1
        else:
            self._refused(operation, model, answer.status_code, _json(answer))

    def _refused(self, operation: str, model: str, status: int, body: object) -> None:
        error = body.get("error", body) if isinstance(body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if (status, code) in EXPECTED_REFUSALS:
            self.tally[f"{operation} {status} {code}"] += 1
        else:
            self.problems.append(f"{operation} {model}: {status} {body!r}")

    async def _crasher(self, deadline: float, rng: random.Random) -> None:
        """SIGKILL one model server's main process every ``crash_every`` seconds."""
        while time.monotonic() + self.crash_every < deadline:
            await asyncio.sleep(self.crash_every)  # the workload's pace, not a wait
            servers = await asyncio.to_thread(model_servers, self.serve, self.tag)
            if not servers:
                continue
            [victim, *_] = servers[rng.choice(sorted(servers))]
            try:
                victim.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue  # stopped by an unload meanwhile
            self.tally["crash"] += 1


def _json(answer: httpx.Response) -> object:
    try:
        return answer.json()
    except ValueError:
        return answer.text[:200]


def books(url: str, serve: int, tag: str) -> list[str]:
    """What does not hold now of the books and processes (empty when all holds)."""
    status = httpx.get(f"{url}/admin/status", timeout=10).json()
    memory = status["memory_info"]["cpu"]
    models = status["model_resources"]
    ready = {m for m, view in models.items() if view["status"] == "ready"}
    problems = []
    resident_bytes = sum(models[m]["memory_bytes"] for m in ready)
    if memory["committed"] != resident_bytes or resident_bytes != len(ready) * MODEL_MEMORY:
        problems.append(
            f"committed {memory['committed']} B, but the {len(ready)} ready models "
            f"({sorted(ready)}) hold {resident_bytes} B"
        )
    for key in ("reserved", "leaving"):
        if memory[key]:
            problems.append(f"{memory[key]} B still {key}")
    if memory["committed"] > memory["budget"]:
        problems.append(f"committed {memory['committed']} B over the budget {memory['budget']}")
    if set(status["loaded_models"]) != ready:
        problems.append(f"loaded_models {status['loaded_models']} is not {sorted(ready)}")
    if status["active_allocations"]:
        problems.append(f"allocations left: {status['active_allocations']}")
    if status["queue"]["waiting"]:
        problems.append(f"{status['queue']['waiting']} requests still waiting")
    for model, view in sorted(models.items()):
        if view["leases"] or view["waiting"]:
            problems.append(f"{model}: {view['leases']} leases, {view['waiting']} waiting")
        if view["status"] in ("loading", "unloading"):
            problems.append(f"{model} still {view['status']}")
    servers = model_servers(serve, tag)
    if set(servers) != ready:
        problems.append(f"model servers run for {sorted(servers)}, ready are {sorted(ready)}")
    if extra := {m: [p.pid for p in found] for m, found in servers.items() if len(found) > 1}:
        problems.append(f"more than one server for a model: {extra}")
    known = {process.pid for found in servers.values() for process in found}
    if strays := [p.pid for p in descendants(serve) if p.pid not in known]:
        problems.append(f"processes under the server that are no model's server: {strays}")
    return problems


async def settled_books(url: str, serve: int, tag: str, timeout: float = 30.0) -> list[str]:
    """``books`` once it holds, or what still did not hold after ``timeout`` seconds
    (a killed server is seen within the crash watch's poll, an unload within its stop)."""
    deadline = time.monotonic() + timeout
    while problems := await asyncio.to_thread(books, url, serve, tag):
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)  # the books change without an event we could wait on
    return problems


def latency_percentiles(seconds: list[float]) -> dict[str, float | None]:
    """p50 and p95 (nearest rank) of ``seconds``; None for both when there are none."""
    if not seconds:
        return {"p50": None, "p95": None}
    ordered = sorted(seconds)

    def rank(share: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95)}
