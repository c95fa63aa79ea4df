"""LlamaCppBackend: a GGUF model served by llama-cpp-python's OpenAI-compatible server.

A convenience over the process backend: it builds the command line of
``python -m llama_cpp.server`` from a few options, and everything else (free loopback
port, health check, log tail, group stop, crash watch, orphan records) is the process
backend's::

    smollm2:
      backend: llamacpp
      model_path: ~/models/SmolLM2-135M-Instruct.Q4_1.gguf
      n_ctx: 2048
      n_threads: 2
      memory: 300MB

Evicted, the server stops. In a pool with a ``warm_budget`` the model goes warm rather
than cold: its GGUF is kept in the page cache (read ahead in the background, booked in
the warm budget at the file's size), and the next request starts the server again with
the file read from RAM rather than disk (``keep_file_cached``, on by default; the
process backend's page-cache tier). ``bench/page_cache.py`` measures what it saves.

A model placed on a GPU sees only that GPU (the process backend's device binding). A
model across devices (``devices: 2``, optionally ``split: [1, 3]``) is started seeing
all of them with ``--tensor_split`` (the placement's shares) and ``--main_gpu 0``: the
server numbers the devices it sees from 0, the main one first. Its ``n_gpu_layers``
must put layers on the GPUs (``-1``: all) for the split to mean anything.

Each start after the first takes a standby interpreter that has imported the server
already (``standby: true``, the default; the process backend's ``standby``): the
server is ready 0.4 s sooner (0.165 s instead of 0.566 s here,
``bench/llamacpp_swap.py``), for 71 MB of host RAM held outside the budgets by the one
waiting. And a stop kills the server at once (``stop_grace: 0``): 0.06 s instead of
its graceful 0.21 s, time the load that evicts it would wait.

The server must be installed for the interpreter that runs it (``python``, by default
the pool's own): ``CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install "llama-cpp-python[server]"``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from modelpool.backends.process import Arg, Env, ProcessBackend
from modelpool.config import ModelSpec
from modelpool.config.fields import ModelFile, Seconds
from modelpool.core.ports import Handle, Placement
from modelpool.types import Bytes, DeviceId

SERVER_IMPORTS = (
    "llama_cpp.server.app", "llama_cpp.server.settings", "llama_cpp.server.cli", "uvicorn",
)  # fmt: skip
"""What ``python -m llama_cpp.server`` imports before it reads its arguments."""
CONTEXT_BYTES_PER_TOKEN = 64 * 1024
"""A rough KV-cache cost per context token for a small model, for the first estimate."""


class LlamaCppOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: ModelFile
    """The GGUF file (``~`` expanded); a config file naming a missing one is refused."""
    n_ctx: int = Field(2048, ge=16)
    n_threads: int | None = Field(None, ge=1)
    n_gpu_layers: int = Field(0, ge=-1)
    """Layers offloaded to the GPU (-1: all); 0 keeps the model on the CPU."""
    chat_format: str | None = None
    extra_args: list[Arg] = Field(default_factory=list)
    """More ``llama_cpp.server`` arguments, as a list (e.g. ``[--seed, 7]``)."""
    env: Env = Field(default_factory=dict)
    """Added to the server's environment; GPU visibility comes from the placement."""
    python: str = sys.executable
    """The interpreter that has llama-cpp-python installed."""
    ready_timeout: Annotated[Seconds, Field(gt=0)] = 120.0
    stop_grace: Annotated[Seconds, Field(ge=0)] = 0.0
    """Seconds between SIGTERM and SIGKILL. None by default: the server keeps nothing
    to save, the pool stops it only once no request is in flight, and its graceful
    exit takes 0.2 s (0.04 s killed), time a load waiting for its memory would wait."""
    log_lines: int = Field(200, ge=1)
    standby: bool = True
    """Keep a standby interpreter with the server's modules imported, which the next
    start takes: 0.4 s less per start, 71 MB of host RAM outside the budgets
    (``standby``). ``false``: every start imports the server itself."""
    keep_file_cached: bool = True
    """Evicted into a pool with a ``warm_budget``: stop the server but keep the GGUF in
    the page cache (booked there at the file's size), so that the next start reads it
    from RAM. ``false``: let the file go with the server."""


def server_command(options: LlamaCppOptions, placement: Placement | None = None) -> list[str]:
    """``python -m llama_cpp.server`` with the model, loopback host and placeholder port;
    across several devices, how to split the model over them.

    The flags are the server's own (its settings' field names, ``--tensor_split`` taking
    one number per device), not the ``llama-server`` binary's ``--tensor-split a,b``."""
    command = [
        options.python, "-m", "llama_cpp.server",
        "--model", "${MODEL_PATH}",
        "--host", "${HOST}",
        "--port", "${PORT}",
        "--n_ctx", str(options.n_ctx),
        "--n_gpu_layers", str(options.n_gpu_layers),
    ]  # fmt: skip
    if options.n_threads is not None:
        command += ["--n_threads", str(options.n_threads)]
    if options.chat_format is not None:
        command += ["--chat_format", options.chat_format]
    if placement is not None and len(placement.devices) > 1:
        # The server sees only its devices, numbered from 0 with the main one first.
        command += ["--tensor_split", *(f"{share:g}" for share in placement.split)]
        command += ["--main_gpu", "0"]
    return command + list(options.extra_args)


class LlamaCppBackend(ProcessBackend):
    """The process backend with llama.cpp's server command line built for you."""

    options_model = LlamaCppOptions  # type: ignore[assignment]

    def can_offload(self, spec: ModelSpec) -> bool:
        """Every model keeps its GGUF cached when evicted, unless ``keep_file_cached`` is
        false."""
        try:
            options = LlamaCppOptions.model_validate(spec.options)
        except ValueError:  # the config reports it; such a model never loads
            return False
        return options.keep_file_cached

    def warm_bytes(self, spec: ModelSpec) -> Bytes | None:
        """Its GGUF's size, kept in the page cache when evicted (None: not kept)."""
        try:
            options = LlamaCppOptions.model_validate(spec.options)
        except ValueError:
            return None
        if not options.keep_file_cached:
            return None
        try:
            return os.path.getsize(os.path.expanduser(options.model_path))
        except OSError:
            return None

    def estimate(self, spec: ModelSpec) -> Bytes | None:
        """Before the first load: the GGUF's size plus a rough KV cache for ``n_ctx``."""
        options = LlamaCppOptions.model_validate(spec.options)
        try:
            weights = os.path.getsize(os.path.expanduser(options.model_path))
        except OSError:
            return None
        return weights + options.n_ctx * CONTEXT_BYTES_PER_TOKEN

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        return await super().load(self._process_spec(spec, Placement.one(device)), device)

    async def load_across(self, spec: ModelSpec, placement: Placement) -> Handle:
        """One server over every device of ``placement``, the model split by its shares."""
        return await super().load_across(self._process_spec(spec, placement), placement)

    def _process_spec(self, spec: ModelSpec, placement: Placement) -> ModelSpec:
        """``spec`` with the process backend's options: the command line built."""
        options = LlamaCppOptions.model_validate(spec.options)
        path = _existing_file(spec, options.model_path)
        process_options = {
            "command": server_command(options, placement),
            "env": dict(options.env),
            "model_path": path,
            "health": "/v1/models",
            "ready_timeout": options.ready_timeout,
            "stop_grace": options.stop_grace,
            "log_lines": options.log_lines,
            "keep_file_cached": options.keep_file_cached,
            "standby_imports": list(SERVER_IMPORTS) if options.standby else [],
        }
        return spec.model_copy(update={"options": process_options})


def _existing_file(spec: ModelSpec, model_path: str) -> str:
    """``model_path`` expanded, if a file is there (a stat: cheap enough for the loop)."""
    path = os.path.expanduser(model_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model {spec.id!r}: no GGUF file at model_path {path!r}")
    return path
