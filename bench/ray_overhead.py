"""Routing overhead on Ray: a request through the Ray Serve ingress versus ``modelpool
serve`` directly, on this machine (issue 18: "report it as a ratio, no target yet").

    .venv/bin/python bench/ray_overhead.py [--requests N] [--replicas R] [--out FOLDER]

Both serve the same config: one ``process`` model whose server is
``bench/echo_upstream.py`` (it answers at once, so the figures are what sits in front
of a model). ``modelpool serve`` runs as a user runs it; the Ray side is a local Ray
(``ray.init(num_cpus=2)``, token auth off) with ``R`` pool replicas behind the OpenAI
ingress and our router, on Ray Serve's HTTP proxy. After a warm-up that loads the model
on each side, sequential chat completions (non-streamed, then streamed: 16 events and
``[DONE]``) go in rounds that alternate the sides, each side on one keep-alive
connection; the time is to the last byte. Prints the medians and p95s and their
ratios, and writes ``bench/results/ray_overhead.{json,md}`` (``--out``: elsewhere).

What the Ray path adds per request: the HTTP proxy, a handle call to the ingress, the
router's ranking, a handle call to the pool replica (a streaming generator), and the
replica's in-process run of the server's app; each hop is an actor call over Ray's RPC.
A third side, "ray floor", is the same two hops with nothing of ours: a FastAPI ingress
on Ray Serve calling (streaming, Ray's default router) a deployment that yields a
canned answer; what the Ray path adds beyond it is modelpool's.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import yaml

from machine import describe_machine
from run_all import ratio
from server import free_port, running_server

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ECHO = BENCH / "echo_upstream.py"
ROUNDS = 6
MESSAGES = [{"role": "user", "content": "Say hello."}]
MODES = ("non-streaming", "streaming")


def config(folder: Path, replicas: int, ray_port: int) -> Path:
    command = [sys.executable, str(ECHO), "--host", "127.0.0.1", "--port", "${PORT}"]
    data = {
        "pool": {"budgets": {"cpu": "1GB"}, "state_dir": str(folder / "state")},
        "server": {"access_log": False},
        "cluster": {"replicas": replicas, "num_cpus": 0.5, "http_port": ray_port},
        "models": {
            "echo": {"backend": "process", "command": command, "memory": "50MB", "device": "cpu"}
        },
    }
    path = folder / "modelpool.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def floor_app(route_prefix: str) -> Any:
    """Ray Serve with nothing of ours: an ingress streaming a canned answer from a
    second deployment through its handle (the same hops as the pool's)."""
    from fastapi import FastAPI
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import StreamingResponse

    answer = json.dumps({"id": "x", "choices": [{"message": {"content": "hello"}}]}).encode()
    app = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.5})
    class Canned:
        async def http(self, body: bytes) -> Any:
            yield answer

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    @serve.ingress(app)
    class Front:
        def __init__(self, canned: Any) -> None:
            self.canned = canned

        @app.post("/v1/chat/completions")
        async def chat(self, request: Request) -> StreamingResponse:
            parts = self.canned.options(stream=True).http.remote(await request.body())
            return StreamingResponse(parts, media_type="application/json")

    return Front.bind(Canned.bind())


def one(client: httpx.Client, base: str, stream: bool) -> float:
    body = {"model": "echo", "messages": MESSAGES, "stream": stream}
    started = time.perf_counter()
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as answer:
        for _ in answer.iter_raw():
            pass
        assert answer.status_code == 200, answer.status_code
    return time.perf_counter() - started


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
        "count": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per side and mode")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["RAY_AUTH_MODE"] = "disabled"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray
        from ray import serve

        from modelpool.ray.deployment import APP_NAME, deploy
        from modelpool.ray.replica import ConfigText

    per_round = max(1, args.requests // ROUNDS)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        ray_port = free_port()
        path = config(folder, args.replicas, ray_port)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            deploy(ConfigText.of_file(path))
            serve.run(floor_app("/floor"), name="floor", route_prefix="/floor")
            with running_server(path, folder) as direct_base:
                sides = {
                    "direct": direct_base,
                    "ray": f"http://127.0.0.1:{ray_port}",
                    "ray floor": f"http://127.0.0.1:{ray_port}/floor",
                }
                clients = {side: httpx.Client(timeout=60) for side in sides}
                try:
                    for side, base in sides.items():  # loads the model; warms connections
                        for _ in range(20):
                            one(clients[side], base, False)
                    for mode in MODES:
                        times: dict[str, list[float]] = {side: [] for side in sides}
                        for _ in range(ROUNDS):
                            for side, base in sides.items():
                                for _ in range(per_round):
                                    times[side].append(
                                        one(clients[side], base, mode == "streaming")
                                    )
                        rows[mode] = {side: summary(t) for side, t in times.items()}
                finally:
                    for client in clients.values():
                        client.close()
        finally:
            serve.delete(APP_NAME)
            serve.delete("floor")
            serve.shutdown()
            ray.shutdown()
    ratios = []
    lines = [
        "# Routing overhead on Ray Serve (`bench/ray_overhead.py`)",
        "",
        f"{describe_machine()}; {args.replicas} pool replicas; "
        f"{per_round * ROUNDS} sequential requests per side and mode.",
        "",
        "| mode | direct median | Ray median | ratio | direct p95 | Ray p95 | added median "
        "| Ray floor median | ours beyond the floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in rows.items():
        direct, on_ray, floor = row["direct"], row["ray"], row["ray floor"]
        ours = on_ray["median_ms"] - floor["median_ms"] - direct["median_ms"]
        factor = on_ray["median_ms"] / direct["median_ms"]
        added = on_ray["median_ms"] - direct["median_ms"]
        ratios.append(ratio(f"Ray ingress vs modelpool serve, {mode} median", factor, "×", "lower"))
        ratios.append(ratio(f"Ray ingress added latency, {mode} median", added, "ms", "lower"))
        lines.append(
            f"| {mode} | {direct['median_ms']:.2f} ms | {on_ray['median_ms']:.2f} ms | "
            f"{factor:.1f}× | {direct['p95_ms']:.2f} ms | {on_ray['p95_ms']:.2f} ms | "
            f"{added:.2f} ms | {floor['median_ms']:.2f} ms | {ours:.2f} ms |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_overhead.md").write_text(report)
    document = {"machine": describe_machine(), "rows": rows, "ratios": ratios}
    (args.out / "ray_overhead.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
