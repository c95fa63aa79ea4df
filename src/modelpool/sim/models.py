"""The model set a simulation runs: sizes, what moving each costs, how fast each serves.

A model's cost to move is given per tier, in seconds: ``load`` from disk to its device
(a cold load: process start, weights read, warm-up), ``restore`` from host RAM back to
the device (in-process models with a warm tier; None for process backends, which
cannot), ``offload`` from the device to host RAM, and ``unload``.

``demo`` is a typical single-GPU box's set: five chat and code LLMs served by llama.cpp
(Q4 GGUF), an embedder, a speech and an image model in-process. Its numbers follow
from sizes and stated bandwidths (``DEMO_ASSUMPTIONS``) rather than from one machine,
so a reader can redo them for theirs; ``ModelSet.load`` reads the same fields from a
YAML or JSON file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelpool.config.placement import ReplicaSettings
from modelpool.sim.workload import Workload
from modelpool.types import Bytes, DeviceId
from modelpool.units import parse_size


@dataclass(frozen=True, slots=True)
class SimModel:
    """One model as the simulator sees it."""

    id: str
    bytes: Bytes
    load_seconds: float
    """Disk → device: a cold load."""
    restore_seconds: float | None = None
    """Host RAM → device; None: no warm tier for this model (a process backend)."""
    offload_seconds: float | None = None
    """Device → host RAM; defaults to ``restore_seconds``."""
    unload_seconds: float = 0.5
    device: DeviceId = "cuda:0"
    tags: tuple[str, ...] = ()
    priority: int = 5
    prefill_tps: float = 2000.0
    """Prompt tokens per second."""
    decode_tps: float = 50.0
    """Generated tokens per second (one request's stream; requests run concurrently)."""
    request_seconds: float = 0.0
    """Fixed seconds per request on top of the tokens (an image, a transcription)."""
    preload: int | None = None
    """Preloaded at the start with this priority (lower first); None: not preloaded."""
    devices: int | None = None
    """Spread over this many devices (``device`` is then ``auto``); None: one."""
    replicas: ReplicaSettings | None = None
    """Served by several copies, as in a pool config (None: one)."""
    max_concurrent: int | None = None
    """Requests one copy serves at once (None: any number, a batching server)."""

    @property
    def offloadable(self) -> bool:
        return self.restore_seconds is not None and self.devices is None

    def service_seconds(self, prompt_tokens: int, output_tokens: int) -> float:
        return (
            self.request_seconds
            + prompt_tokens / self.prefill_tps
            + output_tokens / self.decode_tps
        )


@dataclass(frozen=True, slots=True)
class ModelSet:
    """Models and the budgets they were sized for (a simulation may override them)."""

    name: str
    models: tuple[SimModel, ...]
    budgets: Mapping[DeviceId, Bytes]
    warm_budget: Bytes = 0
    notes: str = ""
    by_id: Mapping[str, SimModel] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {m.id: m for m in self.models}
        if len(by_id) != len(self.models):
            raise ValueError(f"model set {self.name!r}: model ids must be distinct")
        object.__setattr__(self, "by_id", by_id)

    def __getitem__(self, model_id: str) -> SimModel:
        return self.by_id[model_id]

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.models]

    def check_serves(self, workload: Workload) -> None:
        """``ValueError`` naming the models ``workload`` asks for that this set lacks."""
        unknown = sorted(set(workload.models()) - set(self.ids))
        if not unknown:
            return
        missing = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" * (len(unknown) > 5))
        ids = self.ids
        has = ", ".join(ids) if len(ids) <= 20 else f"{len(ids)} models"
        raise ValueError(
            f"workload {workload.name!r} asks for models not in set {self.name!r}: {missing} "
            f"(the set has {has})"
        )

    def with_tags(self, tag: str) -> list[SimModel]:
        return [m for m in self.models if tag in m.tags]

    @classmethod
    def named(cls, name: str) -> ModelSet:
        """A built-in set (``demo``) or a YAML/JSON file of one."""
        if name in BUILT_IN:
            return BUILT_IN[name]()
        path = Path(name)
        if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
            return cls.load(path)
        known = ", ".join(sorted(BUILT_IN))
        raise ValueError(f"unknown model set {name!r}: give {known}, or a .yaml/.json file")

    @classmethod
    def load(cls, path: Path) -> ModelSet:
        """Read a model set file; ``ValueError`` names the file and each bad field."""
        try:
            text = path.read_text()
        except OSError as error:
            raise ValueError(f"{path}: cannot read: {error.strerror or error}") from error
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as error:
            raise ValueError(f"{path}: not valid {path.suffix[1:] or 'YAML'}: {error}") from error
        try:
            parsed = _ModelSetFile.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(f"{path}: {problems}") from None
        return parsed.to_model_set(path.stem)


class _ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    memory: Bytes
    load: float = Field(ge=0)
    restore: float | None = Field(default=None, ge=0)
    offload: float | None = Field(default=None, ge=0)
    unload: float = Field(default=0.5, ge=0)
    device: str = "cuda:0"
    tags: list[str] = Field(default_factory=list)
    priority: int = 5
    prefill_tps: float = Field(default=2000.0, gt=0)
    decode_tps: float = Field(default=50.0, gt=0)
    request_seconds: float = Field(default=0.0, ge=0)
    preload: bool | int = False
    """``true`` (with ``priority``) or a preload priority of its own, as in a pool config."""
    devices: int | None = Field(default=None, ge=1)
    """Spread over this many devices, as in a pool config (``device`` must be ``auto``)."""

    @property
    def preload_priority(self) -> int | None:
        if self.preload is False:
            return None
        return self.priority if self.preload is True else int(self.preload)

    @field_validator("memory", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Bytes:
        return parse_size(value)


class _ModelSetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: dict[str, Bytes] = Field(default_factory=dict)
    warm_budget: Bytes = 0
    notes: str = ""
    models: dict[str, _ModelEntry] = Field(min_length=1)

    @field_validator("budgets", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {device: parse_size(size) for device, size in value.items()}
        return value

    @field_validator("warm_budget", mode="before")
    @classmethod
    def _warm(cls, value: Any) -> Bytes:
        return parse_size(value)

    def to_model_set(self, name: str) -> ModelSet:
        models = tuple(
            SimModel(
                id=model_id,
                bytes=e.memory,
                load_seconds=e.load,
                restore_seconds=e.restore,
                offload_seconds=e.offload,
                unload_seconds=e.unload,
                device=e.device,
                tags=tuple(e.tags),
                priority=e.priority,
                prefill_tps=e.prefill_tps,
                decode_tps=e.decode_tps,
                request_seconds=e.request_seconds,
                preload=e.preload_priority,
                devices=e.devices,
            )
            for model_id, e in self.models.items()
        )
        budgets = self.budgets or {"cuda:0": sum(m.bytes for m in models)}
        return ModelSet(name, models, budgets, self.warm_budget, self.notes)


# --- the built-in demo set -------------------------------------------------------------

GB = 1000**3
DISK_BYTES_PER_S = 2.0 * GB
"""An NVMe SSD's sequential read."""
HOST_TO_DEVICE_BYTES_PER_S = 12.0 * GB
"""PCIe 4.0 x16 pinned-memory copies, about what torch reaches (see bench/load_restore)."""
PROCESS_START_S = 1.5
"""llama.cpp server: process start, CUDA context, KV-cache allocation."""
TORCH_START_S = 2.5
"""In-process model: building the module and warm-up, on top of reading the weights."""

DEMO_ASSUMPTIONS = (
    f"load = start ({PROCESS_START_S:g} s for a llama.cpp server, {TORCH_START_S:g} s for an "
    f"in-process model) + size / {DISK_BYTES_PER_S / GB:g} GB/s disk; restore and offload = "
    f"size / {HOST_TO_DEVICE_BYTES_PER_S / GB:g} GB/s host-device copy"
)


def _llm(model_id: str, size_gb: float, tags: tuple[str, ...], decode_tps: float) -> SimModel:
    size = int(size_gb * GB)
    return SimModel(
        id=model_id,
        bytes=size,
        load_seconds=round(PROCESS_START_S + size / DISK_BYTES_PER_S, 2),
        unload_seconds=0.5,
        tags=tags,
        prefill_tps=2500.0,
        decode_tps=decode_tps,
    )


def _in_process(
    model_id: str, size_gb: float, tags: tuple[str, ...], request_seconds: float
) -> SimModel:
    size = int(size_gb * GB)
    copy = round(size / HOST_TO_DEVICE_BYTES_PER_S, 2)
    return SimModel(
        id=model_id,
        bytes=size,
        load_seconds=round(TORCH_START_S + size / DISK_BYTES_PER_S, 2),
        restore_seconds=copy,
        offload_seconds=copy,
        unload_seconds=0.2,
        tags=tags,
        prefill_tps=20000.0,
        decode_tps=1e9,  # these models take no generated tokens; their time is fixed
        request_seconds=request_seconds,
    )


def demo_model_set() -> ModelSet:
    """Eight models, 39.7 GB in all, for a 16 GB GPU and 24 GB of host RAM to spare."""
    models = (
        _llm("llama-3.1-8b", 4.9, ("chat", "general"), 60.0),
        _llm("qwen2.5-coder-7b", 4.7, ("code",), 65.0),
        _llm("mistral-nemo-12b", 7.5, ("chat",), 40.0),
        _llm("qwen2.5-14b", 9.0, ("chat", "reasoning"), 33.0),
        _llm("phi-3.5-mini", 2.4, ("chat", "general"), 100.0),
        _in_process("bge-m3", 1.2, ("embedding",), 0.03),
        _in_process("whisper-large-v3", 3.1, ("speech",), 1.5),
        _in_process("sdxl-base", 6.9, ("image",), 4.0),
    )
    return ModelSet("demo", models, {"cuda:0": 16 * GB}, 24 * GB, DEMO_ASSUMPTIONS)


BOX_DEVICES = 4
BOX_DEVICE_BYTES = 24 * GB
BOX_ASSUMPTIONS = (
    f"{BOX_DEVICES} GPUs of {BOX_DEVICE_BYTES // GB} GB; models 1.2-40 GB placed with "
    "device: auto, the three above 24 GB spread over two GPUs (llama.cpp --tensor-split); "
    + DEMO_ASSUMPTIONS
)


def box_model_set() -> ModelSet:
    """Sixteen models of 1.2-40 GB (214 GB in all) for a box of four 24 GB GPUs: sizes
    mixed so that where the small ones go decides whether a large one finds a hole."""
    llms = [
        ("phi-3.5-mini", 2.4, ("chat",), 100.0),
        ("llama-3.2-3b", 3.4, ("chat",), 90.0),
        ("qwen2.5-coder-7b", 4.7, ("code",), 65.0),
        ("llama-3.1-8b", 4.9, ("chat", "general"), 60.0),
        ("mistral-nemo-12b", 7.5, ("chat",), 40.0),
        ("qwen2.5-14b", 9.0, ("chat", "reasoning"), 33.0),
        ("gemma-2-27b", 16.6, ("chat",), 22.0),
        ("qwen2.5-32b", 19.9, ("chat", "reasoning"), 18.0),
        ("codestral-22b", 13.3, ("code",), 26.0),
        ("mixtral-8x7b", 26.4, ("chat",), 30.0),
        ("llama-3.3-70b-q3", 34.0, ("chat", "general"), 10.0),
        ("qwen2.5-72b-q3", 40.0, ("chat", "reasoning"), 9.0),
    ]
    models: list[SimModel] = []
    for model_id, size_gb, tags, tps in llms:
        model = _llm(model_id, size_gb, tags, tps)
        spread = 2 if model.bytes > BOX_DEVICE_BYTES else None
        models.append(replace(model, device="auto", devices=spread))
    in_process = [
        _in_process("bge-m3", 1.2, ("embedding",), 0.03),
        _in_process("whisper-large-v3", 3.1, ("speech",), 1.5),
        _in_process("sdxl-base", 6.9, ("image",), 4.0),
        _in_process("flux-dev", 23.8, ("image",), 12.0),
    ]
    models.extend(replace(m, device="auto") for m in in_process)
    budgets = {f"cuda:{i}": BOX_DEVICE_BYTES for i in range(BOX_DEVICES)}
    return ModelSet("box", tuple(models), budgets, 0, BOX_ASSUMPTIONS)


BUILT_IN = {"demo": demo_model_set, "box": box_model_set}


def parse_budgets(values: list[str], models: ModelSet) -> dict[DeviceId, Bytes]:
    """``["16GB"]`` (the set's one device) or ``["cuda:0=16GB", "cuda:1=8GB"]``; the set's
    own budgets for devices not named. ``ValueError`` says which value was wrong."""
    budgets = dict(models.budgets)
    devices = sorted({m.device for m in models.models})
    for value in values:
        device, sep, size = value.rpartition("=")
        if not sep:
            if len(devices) != 1:
                raise ValueError(
                    f"budget {value!r}: set {models.name!r} uses devices {', '.join(devices)}; "
                    "say which, as DEVICE=SIZE"
                )
            device = devices[0]
        try:
            budgets[device] = parse_size(size)
        except ValueError as error:
            raise ValueError(f"budget {value!r}: {error}") from None
    return budgets
