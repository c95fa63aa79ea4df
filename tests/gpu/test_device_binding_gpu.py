"""On a real GPU: a server process sees only the GPU it was placed on, NVML measures it
there, and the torch backend loads on the placed device (issue 17, point 1).

The server is ``servers/gpu_holder.py``: it holds a known number of bytes on every GPU
it can see and reports what it sees. With two or more GPUs, a model across two of them
is checked as well.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if importlib.util.find_spec("pynvml") is None:
    pytest.skip("nvidia-ml-py is not installed", allow_module_level=True)

from safetensors.torch import save_model  # noqa: E402

from modelpool import ModelPool, ModelSpec  # noqa: E402
from modelpool.backends.process import ProcessBackend  # noqa: E402
from modelpool.backends.torch_models import TorchBackend  # noqa: E402
from modelpool.core.handle import Handle, Placement  # noqa: E402
from modelpool.core.memory_watch import measure_processes_across  # noqa: E402
from modelpool.probes.gpu_ids import bare_uuid  # noqa: E402
from modelpool.probes.nvml import NvmlProbe  # noqa: E402

GB = 10**9
MB = 10**6
HELD_MB = 1024
CONTEXT_AT_MOST = 1500 * MB
"""A CUDA context and torch's own use (typically 300-600 MB on recent GPUs)."""
HOLDER = str(Path(__file__).parent / "servers" / "gpu_holder.py")
COUNT = torch.cuda.device_count()


def holder(model_id: str, **fields: Any) -> ModelSpec:
    command = [sys.executable, HOLDER, "--port", "${PORT}", "--mb", str(HELD_MB)]
    options = {"command": command, "health": "/health", "ready_timeout": 180}
    return ModelSpec(id=model_id, backend="process", memory=3 * GB, options=options, **fields)


async def info(handle: Handle) -> dict[str, Any]:
    assert handle.endpoint is not None
    url = handle.endpoint.removesuffix("/v1") + "/info"

    def get() -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
        return answer

    return await asyncio.to_thread(get)


def uuid_of(probe: NvmlProbe, device: str) -> str:
    uuid = probe.uuid(device)
    assert uuid is not None, f"NVML cannot place {device}"
    return bare_uuid(uuid)


@pytest.mark.timeout(300)
async def test_a_server_on_cuda_0_sees_that_gpu_only_and_nvml_measures_it_there() -> None:
    probe = NvmlProbe()
    pool = ModelPool(
        [holder("holder", device="cuda:0")],
        budgets={"cuda:0": "20GB"},
        probe=probe,
        strategy="lru",
        backends={"process": ProcessBackend()},
    )
    async with pool, pool.use("holder") as lease:
        seen = await info(lease.handle)
        footprint = lease.handle.footprint
        pid = lease.handle.pids[0]
    own = os.environ.get("CUDA_VISIBLE_DEVICES")
    print(f"\nserver saw {seen}; pool's CUDA_VISIBLE_DEVICES={own!r}; footprint {footprint}")
    assert seen["device_count"] == 1
    assert bare_uuid(seen["uuids"][0]) == uuid_of(probe, "cuda:0")
    if footprint is None:
        pytest.skip(f"NVML does not list pid {pid} (a container's pid namespace): unknown")
    assert HELD_MB * MB <= footprint <= HELD_MB * MB + CONTEXT_AT_MOST


@pytest.mark.skipif(COUNT < 2, reason="needs two GPUs")
@pytest.mark.timeout(300)
async def test_a_server_across_two_gpus_sees_both_and_is_measured_on_both() -> None:
    probe = NvmlProbe()
    backend = ProcessBackend()
    last = f"cuda:{COUNT - 1}"
    placement = Placement((last, "cuda:0"), (0.5, 0.5))
    handle = await backend.load_across(holder("pair", devices=2), placement)
    try:
        seen = await info(handle)
        measured = measure_processes_across(probe, handle.all_devices, handle.pids)
    finally:
        await backend.unload(handle)
    print(f"\nserver saw {seen}; measured {measured}")
    assert seen["device_count"] == 2
    # Its cuda:0 is the pool's main device, the first of the placement.
    assert [bare_uuid(u) for u in seen["uuids"]] == [uuid_of(probe, last), uuid_of(probe, "cuda:0")]
    if measured is not None:
        assert 2 * HELD_MB * MB <= measured <= 2 * (HELD_MB * MB + CONTEXT_AT_MOST)


async def test_the_torch_backend_loads_on_the_placed_device(tmp_path: Path) -> None:
    """On the last GPU (cuda:0 with one): every tensor there, none on another GPU."""
    device = f"cuda:{COUNT - 1}"
    path = tmp_path / "linear.safetensors"
    save_model(torch.nn.Linear(512, 512), str(path))
    before = [torch.cuda.memory_allocated(i) for i in range(COUNT)]
    spec = ModelSpec(
        id="linear", backend="torch", path=str(path), device=device,
        factory="torch.nn:Linear", factory_kwargs={"in_features": 512, "out_features": 512},
    )  # fmt: skip
    backend = TorchBackend()
    handle = await backend.load(spec, device)
    try:
        assert handle.device == device
        places = {str(t.device) for t in [*handle.obj.parameters(), *handle.obj.buffers()]}
        assert places == {device}
        after = [torch.cuda.memory_allocated(i) for i in range(COUNT)]
        assert all(after[i] == before[i] for i in range(COUNT - 1))
        assert after[-1] > before[-1]
    finally:
        await backend.unload(handle)
