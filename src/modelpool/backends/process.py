"""ProcessBackend: a model served by its own OpenAI-compatible server process.

Any server started from an argument list (llama.cpp's server, vLLM, SGLang...), never
through a shell. Options (flattened in a model's YAML entry)::

    qwen-14b:
      backend: process
      command: [vllm, serve, Qwen/Qwen2.5-14B-Instruct, --port, "${PORT}"]
      health: /health          # polled on 127.0.0.1 until it answers 200
      ready_timeout: 10m
      memory: 11.5GB

A server that can free its device memory while it keeps running (vLLM's sleep mode)
declares how to ask it to, and the model gets a warm tier: evicting it puts it to sleep
(the process stays, its bytes are booked in host RAM within the pool's ``warm_budget``),
the next request wakes it, much faster than a cold start::

      sleep: {method: POST, path: "/sleep?level=1"}
      wake: {method: POST, path: "/wake_up"}

A server that maps its weights file (llama.cpp's ``llama-server -m ${MODEL_PATH}``) can
have a warm tier of another kind, the page cache: with ``keep_file_cached: true``,
evicting it stops the server and keeps ``model_path``'s file in the page cache (read
ahead in the background, booked in ``warm_budget`` at the file's size); the next
request starts the server again, from RAM rather than disk (``kept_files``). The
``llamacpp`` backend turns it on for its models.

A Python server (``[python, -m, module, ...]``) can start without its imports:
``standby_imports`` names them, and the next start takes a standby interpreter that has
done them (``standby``; the ``llamacpp`` backend's servers do, 0.4 s less per start).

``${PORT}``, ``${HOST}`` (always 127.0.0.1), ``${MODEL_ID}`` and ``${MODEL_PATH}`` are
replaced in command items and env values, and so are the device placeholders
(``${DEVICE}``, ``${DEVICE_INDEX}``, ``${DEVICE_INDICES}``, ``${DEVICE_COUNT}``,
``${TENSOR_SPLIT}``). The server sees only the GPUs it was placed on
(``CUDA_VISIBLE_DEVICES``, see ``device_binding``); a model that spans several devices
(``devices: 2``) is started the same way with all of them (``load_across``).

The server gets a free port on 127.0.0.1 unless ``port`` fixes one; its output goes to a
ring of the last ``log_lines`` lines, whose tail every error quotes. It starts in a
session of its own, so stopping it (SIGTERM to its whole process group and session,
SIGKILL after ``stop_grace``) stops its workers too, and an unload returns only once no
process of either is left. With a ``state_dir``, each server is recorded from its spawn
until it is stopped, so that a pool started after a crash stops what the crashed one
left (``pidfiles``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from modelpool.backends import device_binding, procgroup, standby
from modelpool.backends.http_probe import call, get_status
from modelpool.backends.kept_files import KeptFile, KeptFiles
from modelpool.backends.logring import LogRing
from modelpool.backends.pidfiles import PidFiles
from modelpool.config import ModelSpec
from modelpool.config.fields import Seconds
from modelpool.core.ports import HOST as WARM
from modelpool.core.ports import Handle, Placement
from modelpool.types import Bytes, DeviceId, ModelId

log = logging.getLogger("modelpool.process")

HOST = "127.0.0.1"
TAIL = 20
"""Lines of output quoted in errors."""
FIRST_POLL, MAX_POLL = 0.02, 0.1
"""Health polling starts after 20 ms and backs off to every 100 ms: each interval is wait
added to a load (a server ready at 0.8 s was seen at 1.25 s with 50 ms doubling to
500 ms); a GET on loopback ten times a second costs the server nothing it would notice
(`bench/health_poll.py`)."""
PROBE_TIMEOUT = 2.0
KILL_TIMEOUT = 5.0
"""How long the group may take to vanish after SIGKILL before unload reports it."""
WATCH_POLL = 0.2
"""How often a resident server's exit code is looked at: a crash is seen within this."""
ANSWER_CHARS = 1000
"""Characters of a server's answer to a failed sleep or wake quoted in the error."""
DRAIN_TIMEOUT = 2.0
"""How long the output may take to reach its end once the process has exited."""

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
PLACEHOLDERS = ("PORT", "HOST", "MODEL_ID", "MODEL_PATH", *device_binding.DEVICE_PLACEHOLDERS)
"""What ``${NAME}`` in a command or env value may name."""


def _number_as_text(value: object) -> object:
    # YAML reads `[llama-server, --ctx-size, 4096]` and `THREADS: 4` as numbers.
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return str(value) if is_number else value


Arg = Annotated[str, BeforeValidator(_number_as_text)]


def unbound_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` if it leaves device visibility to the pool (a field validator for every
    backend option named ``env`` that reaches a server's environment)."""
    problem = device_binding.env_problem(env)
    if problem is not None:
        raise ValueError(problem)
    return env


Env = Annotated[dict[str, Arg], AfterValidator(unbound_env)]
"""A server's extra environment; the GPU visibility variables are the pool's."""


class ServerCall(BaseModel):
    """One HTTP request the pool makes to the server: how to put it to sleep or wake it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["POST", "PUT", "GET"] = "POST"
    path: str = Field(pattern=r"^/[!-~]*$")
    """Path and query on the server, e.g. ``/sleep?level=1``; any 2xx answer is success."""
    timeout: Annotated[Seconds, Field(gt=0)] = 120.0
    """How long the server may take to answer (a sleep copies the weights to host RAM)."""


class ProcessOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[Arg] = Field(min_length=1)
    """The server's argument list; the first item is the program (looked up in PATH)."""
    env: Env = Field(default_factory=dict)
    """Added to (and overriding) the pool's own environment; the GPU visibility
    variables (``CUDA_VISIBLE_DEVICES``...) are set from the placement, not here."""
    cwd: str | None = None
    model_path: str | None = None
    """What ``${MODEL_PATH}`` stands for (``~`` expanded)."""
    health: str = Field("/health", pattern=r"^/[!-~]*$")
    """Path polled with GET until it answers 200."""
    port: int | None = Field(None, ge=1, le=65535)
    """A fixed port; by default a free one is picked on 127.0.0.1."""
    ready_timeout: Annotated[Seconds, Field(gt=0)] = 120.0
    stop_grace: Annotated[Seconds, Field(ge=0)] = 10.0
    """Seconds between SIGTERM and SIGKILL."""
    log_lines: int = Field(200, ge=1)
    sleep: ServerCall | None = None
    """How to make the server free its device memory while it keeps running."""
    wake: ServerCall | None = None
    """How to bring a sleeping server back; ``health`` must answer 200 after it."""
    keep_file_cached: bool = False
    """Evicted, stop the server but keep ``model_path``'s file in the page cache (a warm
    tier for servers that map their weights file); not with ``sleep``/``wake``."""
    standby_imports: list[str] = Field(default_factory=list)
    """For a Python server started as ``[python, -m, module, ...]``: the modules it
    imports at start (e.g. ``[llama_cpp.server.app, uvicorn]``). The pool then keeps a
    standby interpreter with them imported, which the next start takes: its imports
    are off the load (``standby``). Empty: every start is an ordinary one."""

    @field_validator("command")
    @classmethod
    def _program_named(cls, command: list[str]) -> list[str]:
        if not command[0].strip():
            raise ValueError("the first item of command must name the program to run")
        return command

    @model_validator(mode="after")
    def _sleep_with_wake(self) -> Self:
        if (self.sleep is None) != (self.wake is None):
            given, missing = ("sleep", "wake") if self.wake is None else ("wake", "sleep")
            raise ValueError(
                f"{given} is set but {missing} is not: a model that sleeps needs both "
                f'(e.g. sleep: {{method: POST, path: "/sleep?level=1"}}, '
                f'wake: {{method: POST, path: "/wake_up"}})'
            )
        return self

    @model_validator(mode="after")
    def _one_warm_tier(self) -> Self:
        if self.keep_file_cached and self.model_path is None:
            raise ValueError("keep_file_cached needs model_path: the file to keep cached")
        if self.keep_file_cached and self.sleep is not None:
            raise ValueError(
                "keep_file_cached and sleep/wake are two warm tiers: a model has one "
                "(a server that sleeps keeps its weights itself)"
            )
        return self

    @model_validator(mode="after")
    def _standby_startable(self) -> Self:
        if not self.standby_imports:
            return self
        if len(self.command) < 3 or self.command[1] != "-m":
            raise ValueError(
                "standby_imports needs a command that runs a Python module, "
                f"[python, -m, module, ...]; got {self.command[:3]}"
            )
        if _PLACEHOLDER.search(self.command[2]):
            raise ValueError("standby_imports: the module (command[2]) cannot be a placeholder")
        for key, value in self.env.items():
            if "${PORT}" in value:  # every start would differ from its standby
                raise ValueError(
                    f"standby_imports: env.{key} uses ${{PORT}}; a standby "
                    "is started before its port is known"
                )
        return self

    @model_validator(mode="after")
    def _placeholders_known(self) -> Self:
        # Found here, the config's check names the key and line; found at load time, the
        # model would only fail when first asked for.
        given = [(f"command[{i}]", item) for i, item in enumerate(self.command)]
        given += [(f"env.{key}", value) for key, value in self.env.items()]
        for where, text in given:
            for name in _PLACEHOLDER.findall(text):
                if name not in PLACEHOLDERS:
                    known = ", ".join(f"${{{key}}}" for key in PLACEHOLDERS)
                    raise ValueError(f"unknown placeholder ${{{name}}} in {where}; known: {known}")
                if name == "MODEL_PATH" and self.model_path is None:
                    raise ValueError(f"{where} uses ${{MODEL_PATH}} but model_path is not set")
        return self


@dataclass(slots=True, eq=False)
class ServerProcess:
    """A running server: ``Handle.native`` of a process-backed model."""

    model_id: ModelId
    process: asyncio.subprocess.Process
    """The main process; ``process.pid`` is its pid."""
    pgid: int
    """Its process group (the pid itself: it leads a session of its own)."""
    port: int
    argv: tuple[str, ...]
    log: LogRing
    reader: asyncio.Task[None]
    """Pumps the process's output into ``log`` until the pipe closes."""
    stop_grace: float
    options: ProcessOptions
    placement: Placement
    """Where it was started; a sleeping server wakes on the same devices."""
    spec: ModelSpec
    """The model as started (its options are ``ProcessOptions``), to start it again."""

    @property
    def device(self) -> DeviceId:
        """The main device (the only one, unless the model spans several)."""
        return self.placement.device

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def program(self) -> str:
        return os.path.basename(self.argv[0])

    def with_tail(self, headline: str, lines: int = TAIL) -> str:
        """``headline``, then the last ``lines`` lines of output, one per line."""
        tail = self.log.tail(lines)
        if not tail:
            return f"{headline}; it printed nothing"
        return f"{headline}; last output:\n" + "\n".join(tail)


@dataclass(slots=True, eq=False)
class StoppedServer:
    """``Handle.native`` of a page-cache warm copy: the server stopped, its model file
    kept in the page cache; a restore starts it again from ``spec``."""

    spec: ModelSpec
    """The model as the process backend starts it (its options are ``ProcessOptions``)."""
    file: KeptFile
    log: LogRing
    """The stopped server's output, still shown while it is warm."""


class ProcessBackend:
    """Starts, health-checks and stops OpenAI-compatible server processes."""

    options_model = ProcessOptions

    def __init__(self, standby_delay: float = standby.START_DELAY) -> None:
        """``standby_delay``: seconds from a server's start to the start of the standby
        for the next one (``standby``)."""
        self._standby_delay = standby_delay
        self._stopping: set[asyncio.Task[None]] = set()
        self._pidfiles: PidFiles | None = None
        self._kept = KeptFiles()
        self._standbys = standby.Standbys()
        self._filling: set[asyncio.Task[None]] = set()

    async def open(self, state_dir: Path) -> None:
        """Called by the pool at start: stop servers an earlier run left behind, and
        record the ones this run starts, from their spawn on (see ``pidfiles``)."""
        self._pidfiles = PidFiles(state_dir)
        await self._pidfiles.reap()

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        """Start the model's server seeing only ``device``'s GPU (none on ``cpu``)."""
        return await self._start(spec, Placement.one(device))

    async def load_across(self, spec: ModelSpec, placement: Placement) -> Handle:
        """Start the model's server seeing every device of ``placement`` (the main one
        first); the server spreads itself over them (its own flags say how, e.g.
        ``--tensor-parallel-size ${DEVICE_COUNT}``)."""
        return await self._start(spec, placement)

    async def _start(self, spec: ModelSpec, placement: Placement) -> Handle:
        options = ProcessOptions.model_validate(spec.options)
        try:
            binding = device_binding.visibility(placement, os.environ)
        except device_binding.BindingError as error:
            raise RuntimeError(f"model {spec.id!r}: {error}") from None
        port = options.port if options.port is not None else _free_port()
        if options.port is not None:
            _check_port_free(port, spec.id)
        values = {
            "PORT": str(port),
            "HOST": HOST,
            "MODEL_ID": spec.id,
            "MODEL_PATH": _expand(options.model_path),
            **device_binding.placeholders(placement),
        }
        reasons = _missing_reasons(placement)
        argv = tuple(
            _substitute(item, values, reasons, spec.id, "command") for item in options.command
        )
        env = {
            key: _substitute(value, values, reasons, spec.id, f"env.{key}")
            for key, value in options.env.items()
        }
        spawn_env = {**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", **env, **binding}
        cwd = _expand(options.cwd)
        kind = standby.standby_key(argv, spawn_env, cwd, options.standby_imports)
        taken = await self._from_standby(kind, argv) if kind is not None else None
        from_standby = taken is not None
        if taken is not None:
            process = taken.process
        else:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    env=spawn_env,
                    cwd=cwd,
                )
            except OSError as error:  # no such program, not executable, no such cwd
                raise RuntimeError(
                    f"model {spec.id!r}: cannot start {argv[0]!r}: {error.strerror or error}"
                ) from error
        assert process.stdout is not None
        ring = LogRing(options.log_lines, name=spec.id)
        if binding:  # said where the server's own log will show it, for a reader
            shown = " ".join(f"{key}={value!r}" for key, value in binding.items())
            ring.feed(f"[modelpool] on {', '.join(placement.devices)}: {shown}\n".encode())
        if taken is not None:
            # `ps` shows the launcher's command line: the server's own is said here.
            shown = shlex.join(argv)
            ring.feed(f"[modelpool] in a standby interpreter (imports done): {shown}\n".encode())
            ring.feed(taken.said)
        server = ServerProcess(
            model_id=spec.id,
            process=process,
            pgid=process.pid,
            port=port,
            argv=argv,
            log=ring,
            reader=asyncio.create_task(ring.pump(process.stdout)),
            stop_grace=options.stop_grace,
            options=options,
            placement=placement,
            spec=spec,
        )
        try:
            # Recorded before it is ready: a pool that dies while the server loads its
            # weights leaves a record the next pool reaps (see ``pidfiles``).
            self._record(server)
            await _until_ready(server, options.health, options.ready_timeout)
        except BaseException as error:
            if from_standby and isinstance(error, Exception):
                assert kind is not None
                self._standbys.fail(kind)
            # Never leave a process behind, even when the load itself was cancelled:
            # the stop runs as its own task, which a second cancellation cannot cut.
            stop = asyncio.create_task(self._stop_and_forget(server))
            self._stopping.add(stop)
            stop.add_done_callback(self._stopping.discard)
            try:
                await asyncio.shield(stop)
            except Exception as stop_error:
                if not isinstance(error, Exception):  # a cancellation stays one
                    log.error("model %r: %s", spec.id, stop_error)
                    raise
                first = str(error).partition("\n")[0] or type(error).__name__
                raise RuntimeError(f"{first}; and stopping it failed: {stop_error}") from error
            raise
        if kind is not None:  # the next start of the same kind takes it
            filling = asyncio.create_task(self._standbys.fill(kind, self._standby_delay))
            self._filling.add(filling)
            filling.add_done_callback(self._filling.discard)
        return Handle(
            spec.id,
            placement.device,
            endpoint=f"http://{HOST}:{port}/v1",
            native=server,
            pids=(server.pid,),
            devices=_spanned(placement),
        )

    async def _from_standby(
        self, key: standby.StandbyKey, argv: tuple[str, ...]
    ) -> standby.Standby | None:
        """The standby of ``key``, handed the rest of ``argv``; None if none waits (or it
        died just now: the start is then an ordinary one)."""
        waiting = await self._standbys.take(key)
        if waiting is None:
            return None
        try:
            await standby.hand_over(waiting.process, argv[3:])
        except (BrokenPipeError, ConnectionResetError):
            await standby.end(waiting.process)
            self._standbys.fail(key)
            return None
        return waiting

    async def standbys_started(self) -> None:
        """Return once no standby is being started (each is waiting or was given up): a
        bench or test whose next start must find one waits for this."""
        while self._filling:
            await asyncio.gather(*list(self._filling), return_exceptions=True)

    async def close(self) -> None:
        """End the standby interpreters (the pool calls it as it stops, after every
        model is unloaded); the backend starts servers the ordinary way after it."""
        await self._standbys.close()
        await self.standbys_started()  # each one still importing was killed: reaped here

    async def unload(self, handle: Handle) -> None:
        """Stop the server, awake or asleep (a warm handle holds the same process); a
        page-cache warm copy lets its file go (its pages dropped)."""
        if isinstance(handle.native, StoppedServer):
            await self._kept.release(handle.native.file, drop=True)
            return
        await self._stop_and_forget(_server(handle))

    def can_offload(self, spec: ModelSpec) -> bool:
        """Only a model whose options declare ``sleep`` and ``wake``, or
        ``keep_file_cached``, has a warm tier."""
        try:
            options = ProcessOptions.model_validate(spec.options)
        except ValueError:  # the config reports it; such a model never loads
            return False
        return warm_tier(options) is not None

    def warm_bytes(self, spec: ModelSpec) -> Bytes | None:
        """A model kept in the page cache holds its file's bytes (None for a sleeper:
        booked as on its device until its offload measures it)."""
        try:
            options = ProcessOptions.model_validate(spec.options)
        except ValueError:
            return None
        return _kept_file_bytes(options.model_path) if warm_tier(options) == "page cache" else None

    async def offload(self, handle: Handle) -> Handle:
        """Put the server to sleep (it keeps running and frees its device memory), or
        stop it and keep its model file in the page cache. On failure the model stays as
        it was (a failed stop aside: the pool then stops it the ordinary way)."""
        if handle.device == WARM:
            raise ValueError(f"model {handle.model_id!r} is warm already")
        server = _server(handle)
        tier = warm_tier(server.options)
        if tier == "page cache":
            return await self._stop_keeping_file(handle, server)
        sleep = server.options.sleep
        if sleep is None:
            raise RuntimeError(
                f"model {handle.model_id!r}: its options declare no sleep call "
                "and no keep_file_cached"
            )
        await _ask(server, "sleep", sleep)
        self.log_note(handle, f"asleep ({sleep.method} {sleep.path})")
        return Handle(handle.model_id, WARM, native=server, pids=handle.pids)

    async def _stop_keeping_file(self, handle: Handle, server: ServerProcess) -> Handle:
        """Stop the server; keep its model file cached. The file is checked first: a
        model whose file is gone is not stopped here but unloaded, the ordinary way."""
        path = _expand(server.options.model_path)
        assert path is not None, "keep_file_cached needs model_path (the options check it)"
        try:
            kept = self._kept.keep(path)
        except OSError as error:
            raise RuntimeError(f"model {handle.model_id!r}: {error}") from error
        try:
            await self._stop_and_forget(server)
        except BaseException:
            await self._kept.release(kept, drop=False)
            raise
        stopped = StoppedServer(server.spec, kept, server.log)
        self.log_note(handle, f"stopped; {path} kept in the page cache ({kept.size:,} bytes)")
        return Handle(handle.model_id, WARM, footprint=kept.size, native=stopped)

    async def restore(self, warm: Handle, device: DeviceId) -> Handle:
        """Wake the sleeping server and wait until its health check answers 200, or
        start a stopped one again on ``device`` (its file read from the page cache). On
        failure the pool frees the warm copy (``unload`` of the warm handle)."""
        if warm.device != WARM:
            raise ValueError(f"model {warm.model_id!r} is not warm")
        if isinstance(warm.native, StoppedServer):
            return await self._start_from_cache(warm.native, device)
        server = _server(warm)
        if device != server.device:
            raise RuntimeError(
                f"model {warm.model_id!r} sleeps on {server.device} and cannot wake on {device}"
            )
        if (code := server.process.returncode) is not None:
            raise RuntimeError(
                server.with_tail(f"{server.program} {procgroup.describe_exit(code)} while asleep")
            )
        wake = server.options.wake
        if wake is None:
            raise RuntimeError(f"model {warm.model_id!r}: its options declare no wake call")
        await _ask(server, "wake", wake)
        await _until_ready(server, server.options.health, server.options.ready_timeout)
        self.log_note(warm, f"awake ({wake.method} {wake.path})")
        return Handle(
            warm.model_id,
            device,
            endpoint=f"http://{HOST}:{server.port}/v1",
            native=server,
            pids=warm.pids,
            devices=_spanned(server.placement),
        )

    async def _start_from_cache(self, stopped: StoppedServer, device: DeviceId) -> Handle:
        """Start the server again once its file's read-ahead is done (a sequential read
        beats the server's own page faults); the file's hold passes to the new server,
        its pages stay."""
        await self._kept.ready(stopped.file)
        # The server's own error would say less than this.
        if not await asyncio.to_thread(os.path.isfile, stopped.file.path):
            raise RuntimeError(
                f"model {stopped.spec.id!r}: its model file {stopped.file.path!r} is gone "
                "since the model was evicted"
            )
        handle = await self._start(stopped.spec, Placement.one(device))
        await self._kept.release(stopped.file, drop=False)
        return handle

    def _record(self, server: ServerProcess) -> None:
        if self._pidfiles is None:
            return
        try:
            self._pidfiles.write(server.model_id, server.pid, server.pgid, list(server.argv))
        except OSError as error:  # unrecorded, it could outlive a crashed pool unseen
            raise RuntimeError(
                f"model {server.model_id!r}: cannot record its server process in "
                f"{self._pidfiles.folder}: {error.strerror or error}"
            ) from error

    async def _stop_and_forget(self, server: ServerProcess) -> None:
        """Stop the server; drop its record only once nothing of it is left (a stop that
        fails keeps the record, for the next pool to reap what still runs)."""
        await _stop(server)
        if self._pidfiles is not None:
            self._pidfiles.remove(server.model_id, server.pid)

    async def wait_closed(self, handle: Handle) -> str:
        """Return, saying why, when the server stops on its own (the pool's crash watch).

        The rest of its process group and session is stopped before this returns;
        ``unload`` after it is harmless (it finds nothing left to stop). A page-cache
        warm copy has no process: it never stops on its own (this waits until cancelled)."""
        if isinstance(handle.native, StoppedServer):
            await asyncio.get_running_loop().create_future()
        server = _server(handle)
        code = await procgroup.exit_code(server.process, poll=WATCH_POLL)
        await asyncio.wait({server.reader}, timeout=DRAIN_TIMEOUT)  # its last words
        reason = server.with_tail(f"{server.program} {procgroup.describe_exit(code)}")
        # Workers it left behind still hold memory the pool is about to count as free.
        try:
            await self._stop_and_forget(server)
        except RuntimeError as error:
            reason = f"{reason}\n{error}"
        return reason

    def log_tail(self, handle: Handle, lines: int = TAIL) -> list[str]:
        """The last ``lines`` lines the model's server printed (stdout and stderr)."""
        return _log(handle).tail(lines)

    def log_since(self, handle: Handle, count: int) -> tuple[list[str], int]:
        """The lines the model's server printed after the ``count``-th (a follower's place)."""
        return _log(handle).since(count)

    def log_note(self, handle: Handle, text: str) -> None:
        """Add ``text`` to the model's log, each line marked ``[modelpool]``."""
        ring = _log(handle)
        ring.flush()  # a partial line of the server's own stays its own
        for line in text.splitlines() or [""]:
            ring.feed(f"[modelpool] {line}\n".encode())


WarmTierKind = Literal["sleep", "page cache"]


def warm_tier(options: ProcessOptions) -> WarmTierKind | None:
    """Which warm tier a process model has: its server sleeps and wakes (``sleep``), or
    it is stopped with its model file kept in the page cache (``page cache``), or none."""
    if options.sleep is not None and options.wake is not None:
        return "sleep"
    if options.keep_file_cached and options.model_path is not None:
        return "page cache"
    return None


def _log(handle: Handle) -> LogRing:
    """The output of the model's server, running, asleep or stopped while warm."""
    if isinstance(handle.native, StoppedServer):
        return handle.native.log
    return _server(handle).log


def _server(handle: Handle) -> ServerProcess:
    server = handle.native
    if not isinstance(server, ServerProcess):
        raise TypeError(f"model {handle.model_id!r} was not loaded by the process backend")
    return server


async def _ask(server: ServerProcess, what: str, request: ServerCall) -> None:
    """Make ``request`` (to sleep or wake); raise with the server's answer unless 2xx."""
    url = f"http://{HOST}:{server.port}{request.path}"
    try:
        status, body = await call(HOST, server.port, request.method, request.path, request.timeout)
    except (OSError, TimeoutError, ValueError) as error:
        headline = f"model {server.model_id!r}: {what}: {request.method} {url} {_no_answer(error)}"
        raise RuntimeError(server.with_tail(headline)) from error
    if not 200 <= status < 300:
        answer = body.decode("utf-8", "replace").strip()[:ANSWER_CHARS] or "(empty)"
        headline = (
            f"model {server.model_id!r}: {what}: {request.method} {url} answered {status}: {answer}"
        )
        raise RuntimeError(server.with_tail(headline))


async def _until_ready(server: ServerProcess, health: str, timeout: float) -> None:
    """Poll the health URL until it answers 200; raise if the process exits or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = FIRST_POLL
    url = f"http://{HOST}:{server.port}{health}"
    last = "nothing answered"
    while True:
        if (code := server.process.returncode) is not None:
            await asyncio.wait({server.reader}, timeout=DRAIN_TIMEOUT)  # its last words
            raise RuntimeError(
                server.with_tail(f"{server.program} {procgroup.describe_exit(code)} during start")
            )
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(
                server.with_tail(
                    f"{server.program} was not ready after {timeout:g}s "
                    f"(ready_timeout): GET {url} {last}"
                )
            )
        try:
            status = await get_status(HOST, server.port, health, min(PROBE_TIMEOUT, left))
        except (OSError, TimeoutError, ValueError) as error:
            last = _no_answer(error)
        else:
            if status == 200:
                return
            last = f"answered {status}"
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, MAX_POLL)


async def _stop(server: ServerProcess) -> None:
    """SIGTERM the group and session, SIGKILL them after the grace period, make sure they
    are gone, reap."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + server.stop_grace
    # Off the loop: finding the session's members outside the group reads /proc.
    if await asyncio.to_thread(procgroup.send, server.pgid, signal.SIGTERM):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(procgroup.exit_code(server.process), server.stop_grace)
        # The workers get what is left of the grace period to follow the main process.
        await procgroup.wait_gone(server.pgid, max(0.0, deadline - loop.time()))
        await asyncio.to_thread(procgroup.send, server.pgid, signal.SIGKILL)
    if not await procgroup.wait_gone(server.pgid, KILL_TIMEOUT):
        pids = await asyncio.to_thread(procgroup.live_members, server.pgid)
        raise RuntimeError(
            f"model {server.model_id!r}: process group or session {server.pgid} still runs "
            f"{KILL_TIMEOUT:g}s after SIGKILL (pids: {pids or 'unknown'})"
        )
    await procgroup.exit_code(server.process)
    try:
        # The pipe closes once no member holds it; a process that left the group on
        # purpose (setsid) could keep it open: stop reading then rather than hang.
        await asyncio.wait_for(asyncio.shield(server.reader), DRAIN_TIMEOUT)
    except TimeoutError:
        server.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server.reader
        return
    await server.process.wait()  # output and exit both seen: asyncio closes its transport


def _spanned(placement: Placement) -> tuple[DeviceId, ...]:
    """``Handle.devices``: every device of a model that spans several, else empty."""
    return placement.devices if len(placement.devices) > 1 else ()


def _missing_reasons(placement: Placement) -> dict[str, str]:
    """Why each placeholder that can be undefined is, when it is."""
    no_index = device_binding.missing_reason(placement)
    return {
        "MODEL_PATH": "the model has no model_path option",
        "DEVICE_INDEX": no_index,
        "DEVICE_INDICES": no_index,
    }


def _substitute(
    text: str,
    values: Mapping[str, str | None],
    reasons: Mapping[str, str],
    model_id: ModelId,
    where: str,
) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join(f"${{{key}}}" for key in values)
            raise ValueError(
                f"model {model_id!r}: unknown placeholder ${{{name}}} in {where}; known: {known}"
            )
        value = values[name]
        if value is None:
            why = reasons.get(name, "it has no value here")
            raise ValueError(f"model {model_id!r}: {where} uses ${{{name}}} but {why}")
        return value

    return _PLACEHOLDER.sub(replace, text)


def _kept_file_bytes(path: str | None) -> Bytes | None:
    """The size of a model file to keep cached (None: not there, or none)."""
    expanded = _expand(path)
    try:
        return os.path.getsize(expanded) if expanded is not None else None
    except OSError:
        return None


def _expand(path: str | None) -> str | None:
    return None if path is None else os.path.expanduser(path)


PORT_QUARANTINE_SECONDS = 300.0
"""A port handed to one server is not handed to another for this long."""
_handed_out: dict[int, float] = {}


def _free_port(clock: Callable[[], float] = time.monotonic) -> int:
    """A port nothing listens on now (the OS picks it); the server binds it right after.

    Never one handed to another server in the last ``PORT_QUARANTINE_SECONDS``: a
    request holding a lease on a server that just died would otherwise reach whatever
    server the OS gave its port to next (another model answering for it, silently); a
    dead port instead refuses the connection, which is a clear 502.
    """
    now = clock()
    for stale in [p for p, at in _handed_out.items() if now - at > PORT_QUARANTINE_SECONDS]:
        del _handed_out[stale]
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out[port] = now
            return port
    raise RuntimeError("no port free on 127.0.0.1 that no recent server had")


def _check_port_free(port: int, model_id: ModelId) -> None:
    """Refuse a fixed port something already listens on: its health check would lie."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as error:
            raise RuntimeError(
                f"model {model_id!r}: port {port} on {HOST} is taken ({error.strerror})"
            ) from None


def _no_answer(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "did not answer in time"
    if isinstance(error, ConnectionRefusedError):
        return "was refused (nothing listens yet)"
    return f"failed: {error}"
