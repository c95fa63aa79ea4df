"""The first request after `modelpool serve` starts: does it pay for importing torch?

    .venv/bin/python bench/first_request.py [--runs 3]

Starts `modelpool serve` on one in-process model (all-MiniLM-L6-v2, the embedded
default's embedder) and, `--after` seconds after `/readyz` answers (default 5: a person
or a client that starts with the server), sends one embeddings request with the
official `openai` client, timing it; `--after 0` asks at once, while the background
import may still run. Interleaved, `--runs` times each: with
`pool.prepare_backends: false` (the first load imports torch and sentence-transformers
itself: how it was) and with the default `true` (the pool imports them in the background
at start). The server's own `load_seconds` for the model is read from `/admin` too, so
the table says how much of the first request is the load and how much the import.

Prints medians and their ratio and writes `bench/results/first_request.json` (every run).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from openai import OpenAI

from machine import cpu_name
from modelpool.bootstrap import default_models
from run_all import ratio
from server import running_server

RESULTS = Path(__file__).parent / "results"


def config(prepare: bool) -> dict[str, Any]:
    minilm = default_models()["minilm"]
    return {
        "pool": {"budgets": {"cpu": "1GB"}, "prepare_backends": prepare},
        "models": {"minilm": minilm},
    }


def first_request(prepare: bool, after: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="first-request-") as folder:
        path = Path(folder) / "modelpool.yaml"
        data = config(prepare)
        data["pool"]["state_dir"] = str(Path(folder) / "state")
        path.write_text(yaml.safe_dump(data))
        with running_server(path, Path(folder)) as url:
            client = OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120)
            time.sleep(after)  # the moment the first request comes, by design
            started = time.perf_counter()
            client.embeddings.create(model="minilm", input="the first request")
            seconds = time.perf_counter() - started
            view = httpx.get(f"{url}/admin/models/minilm", timeout=10).json()
    return {"first_request_s": seconds, "load_s": float(view["last_load_seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--after", type=float, default=5.0, help="seconds after ready (5)")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for n in range(args.runs):
        for label in ("off", "on"):  # interleaved: the machine's drift hits both alike
            result = first_request(prepare=label == "on", after=args.after)
            runs[label].append(result)
            print(f"run {n + 1} prepare {label}: first request {result['first_request_s']:.2f} s"
                  f" (its load {result['load_s']:.2f} s)", flush=True)  # fmt: skip
    median = {
        label: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for label, results in runs.items()
    }
    speedup = median["off"]["first_request_s"] / median["on"]["first_request_s"]
    name = f"first embeddings request {args.after:g} s after ready, prepare off / on"
    figures = [ratio(name, speedup)]
    machine = cpu_name()
    data = {
        "command": f"bench/first_request.py --runs {args.runs} --after {args.after:g}",
        "machine": machine,
        "python": platform.python_version(),
        "median": median,
        "runs": runs,
        "ratios": figures,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "first_request.json" if args.after == 5.0 else f"first_request_after{args.after:g}.json"
    (RESULTS / name).write_text(json.dumps(data, indent=2) + "\n")
    print()
    print("| prepare_backends | first request (median) | its load |")
    print("|---|---|---|")
    for label in ("off", "on"):
        m = median[label]
        print(f"| {label} | {m['first_request_s']:.2f} s | {m['load_s']:.2f} s |")
    print(f"\nfirst request {args.after:g} s after ready, off / on: {speedup:.2f}× ({machine})")


if __name__ == "__main__":
    main()
