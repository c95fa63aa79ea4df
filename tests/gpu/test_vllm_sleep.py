"""On a real GPU with vLLM: two vLLM servers under a budget for one, with sleep mode, swap
by sleeping and waking instead of stopping and starting (issue 20, part 3).

Skipped unless CUDA is present, vLLM is importable and ``MODELPOOL_VLLM_MODEL`` names a
model vLLM can load without the network (a local folder, or a name in the local
Hugging Face cache: the lent machines reach no hub).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import sys
import urllib.request

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not installed", allow_module_level=True)
MODEL = os.environ.get("MODELPOOL_VLLM_MODEL")
if not MODEL:
    pytest.skip("MODELPOOL_VLLM_MODEL names no local model for vLLM", allow_module_level=True)

from modelpool import EventKind, ModelPool, ModelSpec, ModelState  # noqa: E402
from modelpool.backends.process import ProcessBackend, ServerProcess  # noqa: E402

GB = 10**9
SHARE = 0.35
"""Of the GPU's memory, what each vLLM server takes (``--gpu-memory-utilization``)."""


def vllm(model_id: str) -> ModelSpec:
    program = shutil.which("vllm")
    cli = [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    start = [program, "serve"] if program else [*cli, "serve"]
    total = torch.cuda.get_device_properties(0).total_memory
    command = [*start, MODEL, "--enable-sleep-mode", "--port", "${PORT}"]
    command += ["--gpu-memory-utilization", str(SHARE), "--max-model-len", "1024"]
    command += ["--served-model-name", "${MODEL_ID}"]
    return ModelSpec(
        id=model_id,
        backend="process",
        memory=int(total * SHARE),
        device="cuda:0",
        options={
            "command": command,
            "env": {"VLLM_SERVER_DEV_MODE": "1", "HF_HUB_OFFLINE": "1"},
            "health": "/health",
            "sleep": {"method": "POST", "path": "/sleep?level=1"},
            "wake": {"method": "POST", "path": "/wake_up"},
            "ready_timeout": "8m",
        },
    )


async def complete(endpoint: str | None, model: str) -> str:
    assert endpoint is not None
    body = json.dumps({"model": model, "prompt": "The capital of France is", "max_tokens": 4})
    request = urllib.request.Request(
        f"{endpoint}/completions", data=body.encode(), headers={"Content-Type": "application/json"}
    )

    def post() -> str:
        with urllib.request.urlopen(request, timeout=120) as response:
            text: str = json.load(response)["choices"][0]["text"]
            return text

    return await asyncio.to_thread(post)


async def test_two_vllm_servers_swap_by_sleeping_and_waking() -> None:
    total = torch.cuda.get_device_properties(0).total_memory
    # The device holds one server (two would pass the budget), host RAM one sleeper.
    pool = ModelPool(
        [vllm("a"), vllm("b")],
        budgets={"cuda:0": int(total * SHARE * 1.5)},
        warm_budget=int(total * SHARE * 1.2),
        strategy="lru",
        backends={"process": ProcessBackend()},
    )
    async with pool:
        async with pool.use("a") as lease:
            a = lease.handle.native
            assert isinstance(a, ServerProcess)
            assert await complete(lease.endpoint, "a")
        async with pool.use("b") as lease:
            assert await complete(lease.endpoint, "b")
            assert pool.state("a") is ModelState.WARM
            assert a.process.returncode is None  # asleep, not stopped
            free, _ = torch.cuda.mem_get_info(0)
            assert free > total * SHARE * 0.8  # a's memory came back while b runs
        async with pool.use("a") as lease:
            assert lease.handle.native is a
            assert await complete(lease.endpoint, "a")
        loads = [e for e in pool.recent_events() if e.kind is EventKind.LOADED]
        assert [e.model_id for e in loads] == ["a", "b", "a"]
        cold, woken = loads[0], loads[2]
        assert woken.detail["restored"] is True
        cold_s, wake_s = cold.detail["seconds"], woken.detail["seconds"]
        print(f"\nvLLM cold start {cold_s:.1f}s, wake {wake_s:.2f}s")
        assert wake_s < cold_s / 5
