"""Seed 002's model management module (``VRAMMonitor``, ``ServiceController``,
``ModelManager``) as facades over one pool.

The seed's rule "only one heavy model at a time" and its VRAM estimates are the
config's business here: an exclusive ``group`` and each model's ``memory``. Its
``use_llm()``/``use_sdxl()``/``use_tts()`` are named entries of the config: a model id
or alias ``llm``, ``sdxl``, ``tts`` (``use_llm(model="qwen-14b")`` names one itself).

Every object made without ``pool=`` shares the process's default pool: the one given
to ``set_default_pool``, else one built from ``MODELPOOL_CONFIG``. The pool runs on a
loop thread of its own, so the context managers work both as ``with`` (also inside
async code, as the seed's examples do) and as ``async with``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from modelpool.compat._bridge import (
    PoolThread,
    close_pool_thread,
    gib,
    in_gib,
    pool_thread,
    read,
)
from modelpool.config import Config
from modelpool.core.lease import Lease
from modelpool.core.pool import ModelPool
from modelpool.core.states import ModelState
from modelpool.errors import InsufficientMemory, ModelPoolError
from modelpool.types import DeviceId

CONFIG_ENV = "MODELPOOL_CONFIG"

_default: ModelPool | None = None
_default_lock = threading.Lock()


def set_default_pool(pool: ModelPool | None) -> None:
    """The pool the seed 002 objects made without ``pool=`` use (None: forget it and
    stop it, if they started it)."""
    global _default
    with _default_lock:
        old, _default = _default, pool
    if old is not None and old is not pool:
        close_pool_thread(old)


def default_pool(config_path: str | os.PathLike[str] | None = None) -> ModelPool:
    """The pool built from ``config_path``, else the default one (see the module)."""
    global _default
    if config_path is not None:
        return ModelPool.from_config(Config.load(config_path))
    with _default_lock:
        if _default is None:
            path = os.environ.get(CONFIG_ENV)
            if not path:
                raise RuntimeError(
                    "no pool for the seed 002 API: pass pool= or config_path=, set "
                    f"{CONFIG_ENV} to a modelpool config, or call set_default_pool(pool)"
                )
            _default = ModelPool.from_config(Config.load(Path(path)))
            # Built here, so stopped here: its model servers end with the program.
            atexit.register(set_default_pool, None)
        return _default


def _device(device: int | str) -> DeviceId:
    return f"cuda:{device}" if isinstance(device, int) else device


# --- VRAM monitor ---------------------------------------------------------------------


@dataclass(frozen=True)
class VRAMSnapshot:
    """One device as the pool's books have it, in GB (GiB): ``allocated`` by resident
    models, ``reserved`` for models loading, ``free`` for new ones, of ``total`` (the
    budget); ``observed_used_gb``: what the memory probe read, when there is one."""

    timestamp: float
    device: DeviceId
    allocated_gb: float
    reserved_gb: float
    free_gb: float
    total_gb: float
    observed_used_gb: float | None = None


@dataclass(frozen=True)
class ModelEstimate:
    """A model's VRAM: ``measured`` by an earlier load, or as ``configured``."""

    model_name: str
    estimated_vram_gb: float
    confidence: str
    device: DeviceId


class VRAMMonitor:
    """The seed's VRAM monitor, reading the pool's books for ``device`` (an int is a
    CUDA index)."""

    def __init__(self, device: int | str = 0, *, pool: ModelPool | None = None) -> None:
        self.pool = pool if pool is not None else default_pool()
        self.device = _device(device)

    def get_snapshot(self) -> VRAMSnapshot:
        books = self._books()
        observed = books.get("observed_used")
        return VRAMSnapshot(
            timestamp=time.time(),
            device=self.device,
            allocated_gb=in_gib(books["committed"]),
            reserved_gb=in_gib(books["reserved"]),
            free_gb=in_gib(books["free"]),
            total_gb=in_gib(books["budget"]),
            observed_used_gb=in_gib(observed) if observed is not None else None,
        )

    def can_fit_model(self, model_name: str) -> bool:
        """Whether ``model_name`` fits in what is free now (no unloading needed)."""
        return read(self.pool, lambda: self.pool.can_fit(model_name))

    def get_model_estimate(self, model_name: str) -> ModelEstimate:
        spec = self.pool.spec(model_name)
        entry = read(self.pool, self.pool.get_resource_status)["model_resources"][
            self.pool.resolve(model_name)
        ]
        size = int(entry["memory_bytes"])
        confidence = "configured" if size == spec.memory else "measured"
        return ModelEstimate(spec.id, in_gib(size), confidence, self.device)

    def require_free_vram(self, required_gb: float, model_name: str = "model") -> None:
        """Raise ``RuntimeError`` (naming what holds the memory) unless ``required_gb``
        is free on the device."""
        try:
            read(
                self.pool, lambda: self.pool.require_free(self.device, gib(required_gb), model_name)
            )
        except InsufficientMemory as error:
            raise InsufficientVRAM(str(error)) from error

    def get_detailed_stats(self) -> dict[str, Any]:
        """The snapshot, the peak booked since the pool started, and each model's use."""
        status = read(self.pool, self.pool.get_resource_status)
        books = status["memory_info"][self.device]
        models = {
            model_id: {"status": entry["status"], "vram_gb": in_gib(entry["memory_bytes"])}
            for model_id, entry in status["model_resources"].items()
            if entry["device"] == self.device
        }
        snapshot = self.get_snapshot()
        return {
            **asdict(snapshot),
            "peak_allocated_gb": in_gib(books["peak"]),
            "utilization": 1 - snapshot.free_gb / snapshot.total_gb if snapshot.total_gb else 0.0,
            "loaded_models": [m for m in status["loaded_models"] if m in models],
            "models": models,
        }

    def print_summary(self) -> None:
        stats = self.get_detailed_stats()
        print(f"VRAM on {stats['device']}:")
        print(
            f"  Allocated: {stats['allocated_gb']:.2f} GB (peak {stats['peak_allocated_gb']:.2f})"
        )
        print(f"  Reserved:  {stats['reserved_gb']:.2f} GB")
        print(f"  Free:      {stats['free_gb']:.2f} / {stats['total_gb']:.2f} GB")
        print(f"  Loaded:    {', '.join(stats['loaded_models']) or 'none'}")

    def _books(self) -> dict[str, Any]:
        memory: dict[str, dict[str, Any]] = read(self.pool, self.pool.get_resource_status)[
            "memory_info"
        ]
        if self.device not in memory:
            raise ValueError(f"no budget for {self.device!r}; the pool has {', '.join(memory)}")
        return memory[self.device]


class InsufficientVRAM(RuntimeError):
    """``require_free_vram`` found too little free (a ``RuntimeError``, as in the seed)."""


# --- service controller ---------------------------------------------------------------


@dataclass(frozen=True)
class LLMStatus:
    is_running: bool
    model: str
    state: str
    vram_usage_gb: float


class ServiceController:
    """Starts and stops the LLM: the config's ``llm`` entry, or the model named."""

    def __init__(self, *, pool: ModelPool | None = None, llm: str = "llm") -> None:
        self.pool = pool if pool is not None else default_pool()
        self.model = llm

    def start_llm(self, model: str | None = None, wait: bool = True) -> bool:
        """Load the LLM (``model`` from now on, if given); False if it failed. Without
        ``wait``, True once the load has been asked for."""
        if model is not None:
            self.model = model
        return self._run(self.pool.load(self.model), wait)

    def is_llm_running(self) -> bool:
        return read(self.pool, lambda: self.pool.state(self.model)) is ModelState.READY

    def stop_llm(self, wait: bool = True) -> bool:
        """Unload the LLM once its requests are done (without ``wait``: in the background)."""
        return self._run(self.pool.unload(self.model), wait)

    def get_llm_status(self) -> LLMStatus:
        model_id = self.pool.resolve(self.model)
        entry = read(self.pool, self.pool.get_resource_status)["model_resources"][model_id]
        running = entry["status"] == ModelState.READY
        vram = in_gib(entry["memory_bytes"]) if running else 0.0
        return LLMStatus(running, model_id, entry["status"], vram)

    def _run(self, work: Any, wait: bool) -> bool:
        thread = pool_thread(self.pool)
        if not wait:
            thread.submit(_quietly(work))
            return True
        try:
            thread.call(work)
        except ModelPoolError:
            return False
        return True


async def _quietly(work: Any) -> None:
    with contextlib.suppress(ModelPoolError):  # the pool logged and published it
        await work


# --- model manager --------------------------------------------------------------------


class ModelManager:
    """Switches models by context: ``with manager.use_sdxl() as pipeline:``.

    ``config_path``: a modelpool config for a pool of this manager's own (else
    ``pool``, else the default pool). ``monitor`` and ``controller`` read and drive the
    same pool.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        *,
        pool: ModelPool | None = None,
        device: int | str = 0,
    ) -> None:
        self.pool = pool if pool is not None else default_pool(config_path)
        self.monitor = VRAMMonitor(device, pool=self.pool)
        self.controller = ServiceController(pool=self.pool)

    def use(self, model: str) -> Using:
        """Lease ``model`` (loading it, unloading others by the config's rules) while
        inside; yields the loaded object for in-process models, else the lease (its
        ``endpoint`` is the model server's URL)."""
        return Using(pool_thread(self.pool), model)

    def use_llm(self, model: str | None = None) -> Using:
        return self.use(model or "llm")

    def use_sdxl(self, model: str | None = None) -> Using:
        return self.use(model or "sdxl")

    def use_tts(self, model: str | None = None) -> Using:
        return self.use(model or "tts")

    def cleanup(self) -> None:
        """Unload every model, once their uses are done."""
        thread = pool_thread(self.pool)
        for model_id in self.pool.specs:
            thread.call(self.pool.unload(model_id))


class Using:
    """What ``ModelManager.use`` returns: a context manager, sync and async."""

    def __init__(self, thread: PoolThread, model: str) -> None:
        self._thread, self._model = thread, model
        self._lease: Lease | None = None

    def __enter__(self) -> Any:
        self._lease = self._thread.call(self._thread.pool.acquire(self._model))
        return _yielded(self._lease)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release(et)

    async def __aenter__(self) -> Any:
        self._lease = await self._thread.run(self._thread.pool.acquire(self._model))
        return _yielded(self._lease)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release(et)

    def _release(self, et: type[BaseException] | None) -> None:
        assert self._lease is not None
        ok = et is None or not issubclass(et, Exception)
        self._thread.loop.call_soon_threadsafe(self._thread.pool.release, self._lease, ok)


def _yielded(lease: Lease) -> Any:
    return lease.obj if lease.obj is not None else lease
