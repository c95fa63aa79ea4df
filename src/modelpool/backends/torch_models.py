"""TorchBackend: PyTorch models in the pool's own process, loaded from safetensors.

What ``path`` holds says what kind of model it is (or set ``kind``):

* a sentence-transformers folder (it has ``modules.json``): the loaded object is the
  ``SentenceTransformer``, so a caller does ``lease.obj.encode([...])``;
* a transformers folder (``config.json``): the ``AutoModel``, and its tokenizer (if the
  folder has one) in ``lease.handle.native.tokenizer``;
* one ``.safetensors`` file, with a ``factory`` that builds the ``nn.Module`` it fits.

Weights are read from local safetensors files only: no hub, no pickles. Options,
flattened in a model's YAML entry::

    minilm:
      backend: torch
      path: ~/models/all-MiniLM-L6-v2        # a folder, or a .safetensors file
      device: cuda:0
      dtype: float16                         # default: as stored
      tags: [embedding]
    digits:
      backend: torch
      path: ~/models/digits.safetensors
      factory: my_app.nets:DigitNet          # "module:attribute", builds the nn.Module
      factory_kwargs: {classes: 10}
      device: cpu

The backend has the warm tier: ``offload`` moves the weights into one flat buffer in
host RAM (page-locked when CUDA is present, unless ``pin_memory: false``) and frees the
device; ``restore`` brings them back in one copy. On the CPU the weights are in host
RAM already, so both keep them where they are. torch, and sentence-transformers or
transformers for those kinds, are imported on the first load, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelpool.backends import page_cache
from modelpool.backends.callable import resolve
from modelpool.config import ModelSpec
from modelpool.core.ports import HOST, Handle
from modelpool.types import Bytes, DeviceId, ModelId

if TYPE_CHECKING:
    from torch import nn

    from modelpool.backends.torch_weights import Placement

Kind = Literal["sentence-transformers", "transformers", "safetensors"]
DType = Literal["float32", "float16", "bfloat16", "float64"]

_REFERENCE = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"  # as in the callable backend
_DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
_STORED_FLOAT_BYTES: dict[str, int] = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
"""safetensors dtypes that a ``dtype`` option converts (integer tensors stay as they are)."""
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class TorchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    """A sentence-transformers or transformers folder, or a .safetensors file (``~`` expanded)."""
    kind: Literal["auto", "sentence-transformers", "transformers", "safetensors"] = "auto"
    """``auto``: a folder with modules.json, one with config.json, or a .safetensors file."""
    factory: str | None = Field(default=None, pattern=_REFERENCE)
    """``"module:attribute"`` building the ``nn.Module`` a .safetensors file is loaded into."""
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    dtype: DType | None = None
    """Convert floating-point weights on load; None keeps them as stored (for a factory's
    module: as the factory built it, the file's values copied in)."""
    pin_memory: bool | None = None
    """Page-lock the warm copy in host RAM (faster moves); None: when CUDA is present."""

    @model_validator(mode="after")
    def _factory_only_for_safetensors(self) -> Self:
        if self.kind == "safetensors" and self.factory is None:
            raise ValueError(
                "kind 'safetensors' needs a factory ('module:attribute' building the nn.Module)"
            )
        if self.kind in ("sentence-transformers", "transformers") and self.factory is not None:
            raise ValueError(f"factory is only used with kind 'safetensors', not {self.kind!r}")
        if self.factory is None and self.factory_kwargs:
            raise ValueError("factory_kwargs given without a factory")
        return self


@dataclass(slots=True)
class TorchModel:
    """``Handle.native`` of a torch model; one per loaded model, shared by its handles."""

    options: TorchOptions
    kind: Kind
    path: Path
    tokenizer: Any = None
    """The transformers tokenizer, for kind ``transformers`` (None if the folder has none)."""
    placement: Placement | None = None
    """Set once the weights were packed into one flat buffer by an offload or restore."""


class TorchBackend:
    """Loads PyTorch models from safetensors; moves them to host RAM and back (warm tier)."""

    options_model = TorchOptions

    def __init__(self) -> None:
        # cuda:N must name the same GPU in this process as in the servers the pool starts
        # (run with CUDA_DEVICE_ORDER=PCI_BUS_ID) and as the NVML probe's N-th: CUDA reads
        # the variable once, when it starts, so it is set before any load; a value the
        # user set stays.
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

    def prepare(self) -> None:
        """Import what loads use (torch, safetensors, and sentence-transformers and
        transformers where installed): about 3.5 s here, paid at start instead of by the
        first request. Blocking: the pool runs it in a worker thread."""
        import safetensors.torch  # noqa: F401
        import torch  # noqa: F401

        for optional in ("sentence_transformers", "transformers"):
            with contextlib.suppress(ImportError):
                importlib.import_module(optional)

    def estimate(self, spec: ModelSpec) -> Bytes | None:
        """Bytes of the safetensors weights (converted to ``dtype``), read from their headers."""
        options = TorchOptions.model_validate(spec.options)
        try:
            files = weight_files(options)
            return sum(stored_bytes(file, options.dtype) for file in files) if files else None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # load says what is wrong

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        options = TorchOptions.model_validate(spec.options)
        state = TorchModel(options, *model_source(spec.id, options))
        return await asyncio.to_thread(_load, spec.id, state, device)

    async def offload(self, handle: Handle) -> Handle:
        """Weights to host RAM (device freed); a warm handle. Raises with nothing moved."""
        if handle.device == HOST:
            raise ValueError(f"model {handle.model_id!r} is already in host RAM")
        return await asyncio.to_thread(_offload, handle)

    async def restore(self, warm: Handle, device: DeviceId) -> Handle:
        """Weights back to ``device`` from a warm handle; the host copy is released."""
        if warm.device != HOST:
            raise ValueError(f"model {warm.model_id!r} is not warm (it is on {warm.device})")
        return await asyncio.to_thread(_restore, warm, device)

    async def unload(self, handle: Handle) -> None:
        state: TorchModel | None = handle.native
        module, device = handle.obj, handle.device
        handle.obj = handle.native = None
        if module is not None:
            # Whoever still holds the module (a lease, a local variable) no longer holds
            # its memory. Here, not in the worker thread: rebinding is quick, and the
            # thread's work item could outlive the await and keep the module alive.
            _release_tensors(module)
        del module
        await asyncio.to_thread(_release, state, device)


def weight_files(options: TorchOptions) -> list[Path]:
    """The .safetensors files ``path`` names (a folder's, in its subfolders too)."""
    path = Path(options.path).expanduser()
    if path.is_dir():
        return sorted(path.rglob("*.safetensors"))
    if path.suffix == ".safetensors" and path.is_file():
        return [path]
    raise FileNotFoundError(f"no folder or .safetensors file at {path}")


def stored_bytes(file: Path, dtype: str | None = None) -> Bytes:
    """The tensor bytes a safetensors file holds (as ``dtype``), from its header alone."""
    from modelpool.backends.safetensors_file import read_header  # no torch import

    _, header = read_header(file)
    total = 0
    for tensor in header.values():
        start, end = tensor["data_offsets"]
        size = end - start
        stored = _STORED_FLOAT_BYTES.get(tensor["dtype"])
        if dtype is not None and stored is not None:
            size = size // stored * _DTYPE_BYTES[dtype]
        total += size
    return total


def model_source(model_id: ModelId, options: TorchOptions) -> tuple[Kind, Path]:
    """What kind of model ``path`` holds, checked (a few stats: cheap enough for the loop)."""
    path = Path(options.path).expanduser()
    where = f"model {model_id!r}: {path}"
    if not path.exists():
        raise FileNotFoundError(f"{where}: no such file or folder")
    kind = options.kind if options.kind != "auto" else _detect(path)
    if kind is None:
        raise ValueError(
            f"{where}: cannot tell the kind of model: expected a folder with modules.json "
            "(sentence-transformers) or config.json (transformers), or a .safetensors file; "
            "or set kind"
        )
    if kind == "safetensors":
        if not path.is_file():
            raise ValueError(f"{where}: kind 'safetensors' needs a .safetensors file")
        if options.factory is None:
            raise ValueError(
                f"{where}: a .safetensors file needs a factory "
                "('module:attribute' building the nn.Module to load it into)"
            )
    elif not path.is_dir():
        raise ValueError(f"{where}: kind {kind!r} needs a model folder")
    elif options.factory is not None:
        raise ValueError(f"{where}: factory is only used with a .safetensors file")
    elif not any(path.rglob("*.safetensors")):
        raise FileNotFoundError(f"{where}: no .safetensors weights in the folder")
    return kind, path


def _detect(path: Path) -> Kind | None:
    if path.is_dir():
        if (path / "modules.json").is_file():
            return "sentence-transformers"
        if (path / "config.json").is_file():
            return "transformers"
        return None
    return "safetensors" if path.suffix == ".safetensors" else None


# --- in a worker thread -------------------------------------------------------------


def _load(model_id: ModelId, state: TorchModel, device: DeviceId) -> Handle:
    from modelpool.backends import torch_weights as weights

    if not (state.kind == "safetensors" and _torch_device(device).type == "cuda"):
        # Every other path maps the files (a GPU load of a factory model streams its file
        # through read() itself): bring cold files in by one sequential read first.
        _read_ahead(weight_files(state.options))
    model = _LOADERS[state.kind](state, device)
    if state.options.dtype is not None and _torch_device(device).type == "cuda":
        # A conversion on the GPU frees the tensors as read into the allocator's cache,
        # which NVML counts as used until it is handed back.
        weights.free_cached(device)
    # The model's own tensors: not memory_allocated deltas, which count whatever else
    # moves on the device meanwhile (loads and restores run in parallel threads).
    footprint = weights.resident_bytes(model)
    return Handle(model_id, device, obj=model, footprint=footprint, native=state)


def _read_ahead(files: list[Path]) -> None:
    """Read cold weight files into the page cache, unless they would not all fit in the
    memory available: then the cache would drop their first pages before the mapping
    reads them, and the disk would be read twice (a model larger than the host's RAM,
    on its way to a GPU through a transformers load)."""
    import psutil

    if sum(file.stat().st_size for file in files) > psutil.virtual_memory().available:
        return
    for file in files:
        page_cache.cache_file(str(file))


def _torch_device(device: DeviceId) -> Any:
    import torch

    return torch.device(device)


def _load_sentence_transformer(state: TorchModel, device: DeviceId) -> nn.Module:
    from sentence_transformers import SentenceTransformer

    model_kwargs = _dtype_kwargs(state.options)
    model = SentenceTransformer(
        str(state.path), device=device, local_files_only=True, model_kwargs=model_kwargs or None
    )
    return model.eval()


def _load_transformers(state: TorchModel, device: DeviceId) -> nn.Module:
    import transformers

    folder = str(state.path)
    dtype = _dtype_kwargs(state.options) or {_dtype_keyword(): "auto"}
    model = transformers.AutoModel.from_pretrained(
        folder, use_safetensors=True, local_files_only=True, **dtype
    )
    if any((state.path / name).is_file() for name in _TOKENIZER_FILES):
        state.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    module: nn.Module = model.to(device).eval()
    return module


def _load_module(state: TorchModel, device: DeviceId) -> nn.Module:
    import torch
    from safetensors.torch import load_model

    reference = state.options.factory
    assert reference is not None  # checked by model_source
    factory = resolve(reference)
    dtype = None if state.options.dtype is None else getattr(torch, state.options.dtype)
    # Fast path: build the module without memory (meta device), then adopt the file's
    # tensors as its weights: no random initialisation, no second copy.
    with torch.device("meta"):
        skeleton = factory(**state.options.factory_kwargs)
    _check_module(skeleton, reference)
    adopted = _adopt_weights(skeleton, state.path, device)
    if adopted is not None:
        return adopted.to(dtype=dtype).eval() if dtype is not None else adopted.eval()
    # The module makes tensors the file does not hold (non-persistent buffers...):
    # build it for real and copy the weights in.
    module: nn.Module = factory(**state.options.factory_kwargs)
    _check_module(module, reference)
    load_model(module, state.path, strict=True)
    return module.to(device=device, dtype=dtype).eval()


def _check_module(module: object, reference: str) -> None:
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"factory {reference!r} returned {type(module).__name__}, not an nn.Module")


def _adopt_weights(module: nn.Module, path: Path, device: DeviceId) -> nn.Module | None:
    """Load ``path`` into a meta-device ``module`` by assignment; None if the file does
    not describe every tensor the module has (the caller falls back to a copy)."""
    tensors = _read_tensors(path, device)
    # Tied weights are stored once: give every name of a shared tensor the same data.
    shared: dict[int, list[str]] = {}
    for name, tensor in [
        *module.named_parameters(remove_duplicate=False),
        *module.named_buffers(remove_duplicate=False),
    ]:
        shared.setdefault(id(tensor), []).append(name)
    for names in shared.values():
        stored = next((tensors[n] for n in names if n in tensors), None)
        if stored is not None:
            for name in names:
                tensors.setdefault(name, stored)
    expected = set(module.state_dict(keep_vars=True))
    if set(tensors) != expected:
        return None
    module.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        return None
    # Assignment gave each name its own Parameter: tie them again, one object per group.
    for first, *others in (names for names in shared.values() if len(names) > 1):
        tied = _tensor_at(module, first)
        for name in others:
            owner, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(owner), leaf, tied)
    return module


def _read_tensors(path: Path, device: DeviceId) -> dict[str, Any]:
    """The file's tensors on ``device``. On a GPU, streamed through two page-locked
    staging buffers (``safetensors_stream``); elsewhere, and for a file that reader
    leaves alone, ``load_file``, which maps the file: no copy, the file being in the page
    cache (``_load`` read it in first). (On the CPU, neither reading a cold file in 64 MiB
    chunks into one huge-page allocation, 2.5 s against the mapping's 0.56 s for 1.08 GB,
    nor a mapping populated in one ``MADV_POPULATE_READ`` sweep measured faster.)"""
    from safetensors.torch import load_file

    from modelpool.backends.safetensors_file import NotReadHere
    from modelpool.backends.safetensors_stream import stream_tensors

    if _torch_device(device).type == "cuda":
        with contextlib.suppress(NotReadHere):
            return stream_tensors(path, device)
    return load_file(str(path), device=str(device))


def _tensor_at(module: nn.Module, name: str) -> Any:
    owner, _, leaf = name.rpartition(".")
    return getattr(module.get_submodule(owner), leaf)


_LOADERS = {
    "sentence-transformers": _load_sentence_transformer,
    "transformers": _load_transformers,
    "safetensors": _load_module,
}


def _dtype_kwargs(options: TorchOptions) -> dict[str, Any]:
    """``{"dtype": torch.float16}`` for ``from_pretrained``, or nothing to keep as stored."""
    if options.dtype is None:
        return {}
    import torch

    return {_dtype_keyword(): getattr(torch, options.dtype)}


def _dtype_keyword() -> str:
    """transformers 4.56 renamed ``torch_dtype`` to ``dtype`` (and warns about the old one)."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _offload(handle: Handle) -> Handle:
    import torch

    from modelpool.backends import torch_weights as weights

    state: TorchModel = handle.native
    module: nn.Module = handle.obj
    if torch.device(handle.device).type == "cpu":
        footprint = weights.resident_bytes(module)  # already in host RAM: nothing to move
        return Handle(handle.model_id, HOST, obj=module, footprint=footprint, native=state)
    pin = state.options.pin_memory
    if pin is None:
        pin = torch.cuda.is_available()
    state.placement = _move(state, module, "cpu", pin)  # from the kept page-locked buffers
    weights.free_cached(handle.device)
    footprint = state.placement.host_bytes  # a kept buffer may be a little larger
    return Handle(handle.model_id, HOST, obj=module, footprint=footprint, native=state)


def _restore(warm: Handle, device: DeviceId) -> Handle:
    import torch

    from modelpool.backends import torch_weights as weights

    state: TorchModel = warm.native
    module: nn.Module = warm.obj
    to_cpu = torch.device(device).type == "cpu"
    # Back on the CPU the weights can stay where they are, unless page-locked.
    if not to_cpu or (state.placement is not None and state.placement.pinned):
        state.placement = _move(state, module, device, pin=False)
    footprint = weights.resident_bytes(module)
    return Handle(warm.model_id, device, obj=module, footprint=footprint, native=state)


def _move(state: TorchModel, module: nn.Module, device: DeviceId, pin: bool) -> Placement:
    """Relocate the weights, then release the buffer they were in."""
    from modelpool.backends import torch_weights as weights

    old = state.placement
    placement = weights.relocate(module, device, pin=pin, packed=old, pool=weights.PINNED)
    if old is not None:
        old.release()
    return placement


def _release_tensors(module: Any) -> None:
    import torch

    from modelpool.backends import torch_weights as weights

    if isinstance(module, torch.nn.Module):
        weights.release_tensors(module)


def _release(state: TorchModel | None, device: DeviceId) -> None:
    from modelpool.backends import torch_weights as weights

    if state is not None and state.placement is not None:
        state.placement.release()  # after the rebinding: nothing views it any more
        state.placement = None
    weights.free_cached("cpu" if device == HOST else device)
