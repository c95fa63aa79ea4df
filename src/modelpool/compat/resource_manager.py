"""Seed 000's ``ResourceManager`` ("Model Switching Strategy"), as a facade over the pool.

The seed's two abstractions are adapted, not reimplemented: its ``ModelLoader``
(async ``load_model(id)``/``unload_model(id)`` returning bool) becomes a pool
``Backend`` and its ``GPUMonitor`` (``get_available_vram()``/``get_total_vram()`` in
GB) a ``MemoryProbe`` whose total is the pool's budget. A model the manager has not seen
is added to the pool the first time it is allocated. Every decision (what to unload,
when, in which order) is the pool's.

The seed's settings map to the pool's: ``auto_switch_threshold`` to the high
watermark, ``max_idle_time`` to the ttl of the models it adds, ``cleanup_interval``
to the reap interval; each takes effect on the running pool when set.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from modelpool.compat._bridge import gib, in_gib
from modelpool.config import ModelSpec
from modelpool.core.pool import ModelPool
from modelpool.core.ports import Clock, Handle, MemoryProbe, MemoryReading
from modelpool.core.specialization import specialization_score
from modelpool.core.states import ModelState
from modelpool.errors import ModelPoolError
from modelpool.probes.auto import AutoProbe
from modelpool.types import DeviceId, ModelSwitchingStrategy

log = logging.getLogger("modelpool.compat")

LOADER_BACKEND = "seed_loader"
"""The backend name of the models a ``ResourceManager`` adds to its pool."""
TASK_TYPES = ("code", "creative", "analysis", "general", "conversation", "summarization")
"""The task types seed 000 scores every model for."""
HISTORY = 100
"""Entries of ``model_performance_history`` kept per model (the seed reads the last 10)."""

# The seed's defaults, so that code that never sets them behaves as it did there.
AUTO_SWITCH_THRESHOLD = 0.8
MAX_IDLE_TIME = 300.0
CLEANUP_INTERVAL = 60.0


class GPUMonitor(ABC):
    """Seed 000's view of a GPU's memory, in GB."""

    @abstractmethod
    def get_available_vram(self) -> float: ...

    @abstractmethod
    def get_total_vram(self) -> float: ...


class ModelLoader(ABC):
    """Seed 000's model loader: True when the model was loaded (or unloaded)."""

    @abstractmethod
    async def load_model(self, model_id: str) -> bool: ...

    @abstractmethod
    async def unload_model(self, model_id: str) -> bool: ...


class ModelStatus(StrEnum):
    """Seed 000's names for the pool's model states."""

    LOADED = "loaded"
    UNLOADED = "unloaded"
    LOADING = "loading"
    UNLOADING = "unloading"
    ERROR = "error"


STATUS = {
    ModelState.READY: ModelStatus.LOADED,
    ModelState.UNLOADED: ModelStatus.UNLOADED,
    ModelState.WARM: ModelStatus.UNLOADED,  # off the GPU, held in host RAM
    ModelState.LOADING: ModelStatus.LOADING,
    ModelState.UNLOADING: ModelStatus.UNLOADING,
    ModelState.FAILED: ModelStatus.ERROR,
}


@dataclass
class ModelResourceInfo:
    """Seed 000's per-model record, read from the pool's status."""

    model_id: str
    status: ModelStatus
    vram_usage_gb: float
    last_used: float
    """Wall-clock time of the last use (0 if never used)."""
    load_count: int
    current_tasks: int
    total_tasks_processed: int
    average_response_time: float
    """Seconds."""
    error_count: int
    specialization_scores: dict[str, float] = field(default_factory=dict)


class LoaderBackend:
    """A pool backend that loads through a seed ``ModelLoader``.

    With a ``GPUMonitor``, a load's footprint is what the monitor saw become used.
    """

    def __init__(self, loader: ModelLoader, monitor: GPUMonitor | None = None) -> None:
        self.loader, self.monitor = loader, monitor

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        before = self.monitor.get_available_vram() if self.monitor is not None else None
        if not await self.loader.load_model(spec.id):
            raise RuntimeError(
                f"{type(self.loader).__name__}.load_model({spec.id!r}) returned False"
            )
        footprint = None
        if self.monitor is not None and before is not None:
            footprint = max(0, gib(before - self.monitor.get_available_vram()))
        return Handle(spec.id, device, footprint=footprint)

    async def unload(self, handle: Handle) -> None:
        if not await self.loader.unload_model(handle.model_id):
            name = type(self.loader).__name__
            raise RuntimeError(f"{name}.unload_model({handle.model_id!r}) returned False")


class MonitorProbe:
    """A pool memory probe reading one device through a seed ``GPUMonitor``."""

    name = "gpu_monitor"

    def __init__(self, monitor: GPUMonitor, device: DeviceId) -> None:
        self.monitor, self.device = monitor, device

    def read(self, device: DeviceId) -> MemoryReading | None:
        if device != self.device:
            return None
        total = gib(self.monitor.get_total_vram())
        return MemoryReading(device, total, max(0, total - gib(self.monitor.get_available_vram())))


def _local_memory() -> tuple[DeviceId, MemoryProbe]:
    """With no monitor given: the first GPU if there is one, else host RAM."""
    for device in ("cuda:0", "cpu"):
        probe = AutoProbe(devices=[device])
        if probe.read(device) is not None:
            return device, probe
    raise RuntimeError("no GPU or host memory reading here: give ResourceManager a gpu_monitor")


class ResourceManager:
    """Seed 000's resource manager over a ``ModelPool`` it builds around ``loader``.

    Beyond the seed's arguments: ``model_vram_gb`` (each model's size, GB) and
    ``default_vram_gb`` for the others (the pool books what the monitor measures after
    the first load); ``specializations`` (each model's task types, "code, analysis"
    as in the seed, or a list) become the models' tags.
    """

    def __init__(
        self,
        loader: ModelLoader,
        gpu_monitor: GPUMonitor | None = None,
        *,
        model_vram_gb: Mapping[str, float] | None = None,
        default_vram_gb: float = 0.0,
        specializations: Mapping[str, str | Iterable[str]] | None = None,
        strategy: str | ModelSwitchingStrategy = ModelSwitchingStrategy.HYBRID,
        clock: Clock = time.monotonic,
    ) -> None:
        if gpu_monitor is not None:
            device: DeviceId = "cuda:0"
            probe: MemoryProbe = MonitorProbe(gpu_monitor, device)
        else:
            device, probe = _local_memory()
        reading = probe.read(device)
        assert reading is not None
        self.device = device
        self._sizes = dict(model_vram_gb or {})
        self._default_size = default_vram_gb
        self._specializations = {k: _tags(v) for k, v in (specializations or {}).items()}
        self._max_idle_time = MAX_IDLE_TIME
        self._added: set[str] = set()
        self.model_performance_history: dict[str, list[dict[str, Any]]] = {}
        self.pool = ModelPool(
            budgets={device: reading.total},
            strategy=strategy,
            backends={LOADER_BACKEND: LoaderBackend(loader, gpu_monitor)},
            probe=probe,
            clock=clock,
            high_watermark=AUTO_SWITCH_THRESHOLD,
            reap_interval=CLEANUP_INTERVAL,
        )

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self.pool.start()

    async def stop(self) -> None:
        """Let the tasks finish (bounded), then unload every model."""
        await self.pool.stop()

    # --- allocations ---------------------------------------------------------------

    async def allocate_model(self, model_id: str, task_id: str, priority: int = 5) -> bool:
        """Lease ``model_id`` to ``task_id``, loading it (and unloading others by the
        strategy) if needed; False, with a log line saying why, if that failed."""
        try:
            self._ensure_known(model_id)
        except (ValueError, ModelPoolError) as error:
            log.warning("allocate_model(%s, %s) refused: %s", model_id, task_id, error)
            return False
        return await self.pool.allocate_model(model_id, task_id, priority)

    async def deallocate_model(self, task_id: str) -> bool:
        return await self.pool.deallocate_model(task_id)

    def set_switching_strategy(self, strategy: str | ModelSwitchingStrategy) -> None:
        self.pool.set_switching_strategy(strategy)

    async def update_model_performance(
        self, model_id: str, response_time: float, success: bool = True
    ) -> None:
        """Record a task's response time (seconds) and outcome for ``model_id``."""
        await self.pool.update_model_performance(model_id, response_time, success)
        history = self.model_performance_history.setdefault(model_id, [])
        history.append(
            {"timestamp": time.time(), "response_time": response_time, "success": success}
        )
        del history[:-HISTORY]

    def get_best_model_for_task(self, task_type: str) -> str | None:
        return self.pool.get_best_model_for_task(task_type)

    # --- status --------------------------------------------------------------------

    @property
    def model_resources(self) -> dict[str, ModelResourceInfo]:
        """Every model's ``ModelResourceInfo``, by id."""
        status = self.pool.get_resource_status()
        return {
            model_id: self._info(model_id, entry, status["clock"])
            for model_id, entry in status["model_resources"].items()
        }

    def get_resource_status(self) -> dict[str, Any]:
        """The seed's status: ``loaded_models``, ``active_allocations``,
        ``model_resources`` (each a ``ModelResourceInfo`` as a dict), ``memory_info``
        (GB), ``switching_strategy``; and ``pool``, the pool's own status."""
        status = self.pool.get_resource_status()
        books = status["memory_info"][self.device]
        total = books.get("observed_total", books["budget"])
        used = books.get("observed_used", books["committed"] + books["reserved"])
        return {
            "loaded_models": status["loaded_models"],
            "active_allocations": status["active_allocations"],
            "model_resources": {
                model_id: asdict(self._info(model_id, entry, status["clock"]))
                for model_id, entry in status["model_resources"].items()
            },
            "memory_info": {
                "device": self.device,
                "total_vram_gb": in_gib(total),
                "used_vram_gb": in_gib(used),
                "available_vram_gb": in_gib(max(0, total - used)),
                "budget_gb": in_gib(books["budget"]),
                "booked_vram_gb": in_gib(books["committed"] + books["reserved"]),
            },
            "switching_strategy": status["strategy"],
            "pool": status,
        }

    def _info(self, model_id: str, entry: Mapping[str, Any], now: float) -> ModelResourceInfo:
        status = STATUS[ModelState(entry["status"])]
        idle = entry["idle_seconds"]
        return ModelResourceInfo(
            model_id=model_id,
            status=status,
            vram_usage_gb=in_gib(entry["memory_bytes"]) if status is ModelStatus.LOADED else 0.0,
            last_used=time.time() - idle if idle is not None else 0.0,
            load_count=entry["load_count"],
            current_tasks=entry["current_tasks"],
            total_tasks_processed=entry["total_tasks_processed"],
            average_response_time=entry["average_response_time"],
            error_count=entry["errors"],
            specialization_scores={
                task: specialization_score(entry["tags"], task) for task in TASK_TYPES
            },
        )

    # --- settings (the seed sets them as attributes) -------------------------------

    @property
    def auto_switch_threshold(self) -> float | None:
        """Share of VRAM above which idle models are unloaded ahead of need."""
        return self.pool.settings.high_watermark

    @auto_switch_threshold.setter
    def auto_switch_threshold(self, share: float) -> None:
        # The low watermark follows a tenth below unless the pool was given one.
        self.pool.retune(high_watermark=share)

    @property
    def max_idle_time(self) -> float:
        """Seconds after which an idle model the manager added is unloaded."""
        return self._max_idle_time

    @max_idle_time.setter
    def max_idle_time(self, seconds: float) -> None:
        for model_id in self._added:  # checked by the pool: positive seconds
            self.pool.set_ttl(model_id, seconds)
        self._max_idle_time = seconds

    @property
    def cleanup_interval(self) -> float:
        """Seconds between the pool's checks of idle models (and memory readings)."""
        return self.pool.settings.reap_interval

    @cleanup_interval.setter
    def cleanup_interval(self, seconds: float) -> None:
        self.pool.retune(reap_interval=seconds)  # from the next check on

    # --- internals -----------------------------------------------------------------

    def _ensure_known(self, model_id: str) -> None:
        if model_id in self._added or model_id in self.pool.specs:
            return
        size = self._sizes.get(model_id, self._default_size)
        checked = ModelSpec(
            id=model_id,
            backend="fake",
            memory=gib(size),
            device=self.device,
            ttl=self._max_idle_time,
            tags=self._specializations.get(model_id, ()),
        )
        # The loader is this manager's own backend instance, handed to its pool, not a
        # plug-in a config may name: the spec is checked as any other (with a backend
        # that takes no options), then names it. Registering it would make it a
        # backend of every pool in the process.
        spec = checked.model_copy(update={"backend": LOADER_BACKEND})
        self.pool.add_model(spec)
        self._added.add(model_id)


def _tags(specialization: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(specialization, str):
        return tuple(part.strip() for part in specialization.split(",") if part.strip())
    return tuple(specialization)
