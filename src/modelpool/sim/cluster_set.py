"""Models and traffic at cluster scale: 1,000 models of mixed sizes, 100 nodes of 8 GPUs.

``cluster_model_set`` draws each model from the ``box`` set's sixteen kinds (1.2-40 GB:
chat and code LLMs, the three above 24 GB spread over two GPUs, an embedder, a speech
and two image models), so sizes, load times and speeds stay those of real models; a
node has eight 24 GB GPUs, as the box does twice over. No warm tier: a model evicted on
one node is loaded again from disk wherever it goes next.

The workloads are the one-box generators scaled up:

* ``cluster_zipf``: ``workloads.zipf_drift`` over the 1,000 models (Zipf 1.1, the
  ranking reshuffled every 10 minutes), at ``requests`` over the hour.
* ``cluster_hot``: ``cluster_zipf`` with a few LLMs taking a share of the traffic on
  top, each more than one node's copy serves (with ``max_concurrent`` slots, as
  ``cluster_model_set(..., max_concurrent=4)`` gives every LLM): where a hot model's
  copies on several nodes pay.
* ``cluster_azure``: the Azure conversation trace (19,366 requests in its hour), laid
  ``copies`` times over itself, each copy shifted in time by a seeded offset (wrapping
  around the hour) so that bursts do not coincide; the merged stream is mapped onto the
  set's LLMs by the same rule as ``traces.azure_trace``: ``sessions`` sticky
  conversations open at once, each drawing its model from a Zipf law over one seeded
  ranking and lasting a geometric number of requests (mean 10).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from modelpool.sim.models import GB, ModelSet, SimModel, box_model_set
from modelpool.sim.traces import azure_trace, llm_ids, zipf_weights
from modelpool.sim.workload import Request, Workload
from modelpool.sim.workloads import zipf_drift

NODES = 100
GPUS_PER_NODE = 8
GPU_BYTES = 24 * GB
MODELS = 1000
HOUR = 3600.0


def node_budgets(gpus: int = GPUS_PER_NODE, gpu_bytes: int = GPU_BYTES) -> dict[str, int]:
    return {f"cuda:{i}": gpu_bytes for i in range(gpus)}


def cluster_model_set(
    count: int = MODELS, seed: int = 0, *, max_concurrent: int | None = None
) -> ModelSet:
    """``count`` models, each a copy of one of the ``box`` set's kinds drawn at random
    (``kind-0042``), for nodes of eight 24 GB GPUs. ``max_concurrent``: every LLM serves
    that many requests at once (llama.cpp's ``--parallel`` slots), the rest wait."""
    if count < 1:
        raise ValueError(f"cluster_model_set: count must be >= 1, not {count}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ValueError(f"cluster_model_set: max_concurrent must be >= 1, not {max_concurrent}")
    kinds = box_model_set().models
    rng = random.Random(seed)
    width = len(str(count - 1))
    models: list[SimModel] = []
    for index in range(count):
        kind = rng.choice(kinds)
        models.append(replace(kind, id=f"{kind.id}-{index:0{width}d}", preload=None))
    name = f"cluster{count}"
    if max_concurrent is not None:
        llms = set(llm_ids(ModelSet(name, tuple(models), node_budgets())))
        models = [replace(m, max_concurrent=max_concurrent) if m.id in llms else m for m in models]
        name += f"-slots{max_concurrent}"
    total = sum(m.bytes for m in models)
    slots = f"; LLMs serve {max_concurrent} at once" if max_concurrent is not None else ""
    notes = (
        f"{count} models drawn from the box set's kinds ({total / 1e12:.1f} TB in all), "
        f"for nodes of {GPUS_PER_NODE} GPUs of {GPU_BYTES // GB} GB; no warm tier{slots}"
    )
    return ModelSet(name, tuple(models), node_budgets(), 0, notes)


def cluster_zipf(
    models: ModelSet, *, requests: int, seed: int = 0, duration: float = HOUR
) -> Workload:
    workload = zipf_drift(models, requests=requests, duration=duration, seed=seed)
    return replace(workload, name="zipf")


def cluster_hot(
    models: ModelSet,
    *,
    requests: int,
    hot: int = 2,
    share: float = 0.2,
    seed: int = 0,
    duration: float = HOUR,
) -> Workload:
    """``cluster_zipf`` with ``hot`` LLMs (drawn by ``seed``) taking ``share`` of the
    ``requests`` on top, evenly: a Zipf stream over just them, merged in by time."""
    if not 0 < share < 1:
        raise ValueError(f"cluster_hot: share must be between 0 and 1, not {share}")
    ranking = llm_ids(models)
    if not 1 <= hot <= len(ranking):
        raise ValueError(f"cluster_hot: hot must be 1 to {len(ranking)} (the LLMs), not {hot}")
    rng = random.Random(seed)
    chosen = tuple(models[i] for i in rng.sample(ranking, hot))
    hot_requests = round(requests * share)
    rest = zipf_drift(models, requests=requests - hot_requests, duration=duration, seed=seed)
    only_hot = ModelSet(f"{models.name}-hot", chosen, models.budgets)
    top = zipf_drift(only_hot, requests=hot_requests, duration=duration, seed=seed + 1,
                     exponent=0.0)  # fmt: skip
    merged = sorted((*rest.requests, *top.requests), key=lambda r: r.time)
    names = ", ".join(m.id for m in chosen)
    return Workload(
        name="hot",
        requests=tuple(merged),
        description=f"zipf with {names} taking {share:.0%} of {len(merged)} requests",
        params={"generator": "cluster_hot", "seed": seed, "requests": len(merged),
                "hot": [m.id for m in chosen], "share": share, "duration": duration},
    )  # fmt: skip


def cluster_azure(
    models: ModelSet,
    *,
    copies: int,
    seed: int = 0,
    sessions: int = 512,
    mean_session_requests: float = 10.0,
    exponent: float = 1.1,
) -> Workload:
    """The Azure trace laid ``copies`` times over its own hour (module docstring)."""
    if copies < 1 or sessions < 1:
        raise ValueError(
            f"cluster_azure: need copies >= 1 and sessions >= 1, not {copies}, {sessions}"
        )
    trace = azure_trace(models, seed=seed, sessions=1).requests  # its times and tokens
    span = trace[-1].time + 1e-6 if trace else 0.0
    rng = random.Random(seed)
    timed: list[tuple[float, int, int]] = []
    for copy in range(copies):
        offset = 0.0 if copy == 0 else rng.random() * span
        timed.extend(((r.time + offset) % span, r.prompt_tokens, r.output_tokens) for r in trace)
    timed.sort(key=lambda item: item[0])
    ranking = llm_ids(models)
    rng.shuffle(ranking)
    weights = zipf_weights(len(ranking), exponent)
    cumulative = _cumulative(weights)

    def draw_model() -> str:
        return rng.choices(ranking, cum_weights=cumulative)[0]

    def draw_length() -> int:
        if mean_session_requests <= 1:
            return 1
        return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / mean_session_requests))

    model_of = [draw_model() for _ in range(sessions)]
    left = [draw_length() for _ in range(sessions)]
    out: list[Request] = []
    for time, prompt, output in timed:
        slot = rng.randrange(sessions)
        out.append(Request(time, model_of[slot], prompt, output))
        left[slot] -= 1
        if left[slot] == 0:
            model_of[slot], left[slot] = draw_model(), draw_length()
    return Workload(
        name="azure",
        requests=tuple(out),
        description=(
            f"Azure LLM inference trace (conversation, 2023; CC-BY 4.0) laid {copies}x over "
            f"its hour: {len(out)} requests mapped onto {len(ranking)} LLMs by {sessions} "
            "sticky Zipf sessions"
        ),
        params={
            "generator": "cluster_azure",
            "seed": seed,
            "copies": copies,
            "sessions": sessions,
            "exponent": exponent,
            "mean_session_requests": mean_session_requests,
            "requests": len(out),
        },
    )


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out
