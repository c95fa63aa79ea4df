"""Every error modelpool raises on purpose, each saying what was wrong and where.

    ModelPoolError
    ├── ConfigError            a config file, env override or argument is invalid
    ├── PluginNotFound         no policy/backend registered under that name
    ├── UnknownModel           no model configured under that id
    ├── CapacityError          the memory is not there
    │   ├── DoesNotFit         bigger than the device's whole budget: never loadable
    │   ├── InsufficientMemory nothing evictable frees enough; names the holders
    │   └── ModelLimitReached  max_models are loaded and none can leave; names them
    ├── PreloadSkipped         a preload would have evicted what it may not, or found no room
    ├── QueueFull              too many requests already waiting
    │   └── ModelQueueFull     ... for one model, at its own max_queue (HTTP 429)
    ├── WaitTimeout            waited longer than allowed for a model
    ├── LoadFailed             the backend could not load the model (model is FAILED)
    │   └── CircuitOpen        ... too many times in a row: only an explicit load retries
    ├── PoolClosed             the pool is stopped or was never started
    ├── ModelBusy              a model to forget is still loaded or wanted
    ├── UnknownVersion         a model has no version under that name
    ├── UnknownOperation       no rollout operation has that id
    ├── SwitchRefused          a rollout cannot start (every problem listed)
    ├── StateError             a state file under the state dir cannot be written
    ├── IllegalTransition      a lifecycle bug: a state change the table forbids
    └── AccountingError        a ledger bug: bytes that would not add up

Servers map these to HTTP statuses; nothing here carries a stack trace or a secret.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from modelpool.types import Bytes, DeviceId, ModelId
from modelpool.units import format_size


class ModelPoolError(Exception):
    """Base of every error modelpool raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config: where (file, key path, line) and what was expected."""

    source: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path or '<root>'}: {self.message}"


class ConfigError(ModelPoolError, ValueError):
    """The configuration is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        count = len(self.issues)
        super().__init__(f"invalid configuration ({count} problem{'s' * (count != 1)}):\n{lines}")


class PluginNotFound(ModelPoolError, LookupError):
    """No plug-in of this kind is registered under the requested name."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        close = difflib.get_close_matches(name, self.known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint}; known: {', '.join(self.known)}")


class UnknownModel(ModelPoolError, LookupError):
    """No model is configured under this id."""

    def __init__(self, model_id: ModelId, known: Sequence[ModelId]) -> None:
        self.model_id = model_id
        shown = ", ".join(sorted(known)[:20]) or "none"
        super().__init__(f"unknown model {model_id!r}; configured models: {shown}")


class CapacityError(ModelPoolError):
    """The memory a model needs is not available."""


class DoesNotFit(CapacityError):
    """The model is larger than the device's whole budget; no eviction can help."""

    def __init__(self, model_id: ModelId, device: DeviceId, need: Bytes, budget: Bytes) -> None:
        self.model_id, self.device, self.need, self.budget = model_id, device, need, budget
        super().__init__(
            f"model {model_id!r} needs {format_size(need)} but the whole budget of "
            f"{device} is {format_size(budget)}; raise the budget or place it elsewhere"
        )


@dataclass(frozen=True, slots=True)
class Holder:
    """A model that holds memory another model needs, and why it cannot give it up."""

    model_id: ModelId
    bytes: Bytes
    reason: str  # "pinned", "leased by task-7, task-9", "loading", ...

    def __str__(self) -> str:
        return f"{self.model_id} ({format_size(self.bytes)}, {self.reason})"


class InsufficientMemory(CapacityError):
    """Nothing evictable frees enough memory; ``holders`` says what holds it."""

    def __init__(
        self,
        model_id: ModelId,
        device: DeviceId,
        need: Bytes,
        free: Bytes,
        holders: Sequence[Holder],
    ) -> None:
        self.model_id, self.device, self.need, self.free = model_id, device, need, free
        self.holders = list(holders)
        held = "; ".join(str(h) for h in self.holders) or "nothing"
        super().__init__(
            f"cannot make room for {model_id!r} on {device}: needs {format_size(need)}, "
            f"{format_size(free)} free, memory held by: {held}"
        )


class ModelLimitReached(CapacityError):
    """``max_models`` (of the pool or a device) are loaded and none of them can leave."""

    def __init__(self, model_id: ModelId, where: str, limit: int, holders: Sequence[Holder]):
        self.model_id, self.where, self.limit = model_id, where, limit
        self.holders = list(holders)
        held = "; ".join(str(h) for h in self.holders) or "nothing"
        super().__init__(
            f"cannot load {model_id!r}: {where} allows {limit} model{'s' * (limit != 1)} at "
            f"once (max_models) and none can leave: {held}"
        )


class PreloadSkipped(ModelPoolError):
    """A preload did not start: it may only use room nobody needs."""

    def __init__(self, model_id: ModelId, reason: str) -> None:
        self.model_id, self.reason = model_id, reason
        super().__init__(f"preload of {model_id!r} skipped: {reason}")


class QueueFull(ModelPoolError):
    """The wait queue is at its bound; the caller should retry later."""

    def __init__(self, model_id: ModelId, limit: int) -> None:
        self.model_id, self.limit = model_id, limit
        super().__init__(f"cannot queue a request for {model_id!r}: {limit} requests already wait")


class ModelQueueFull(QueueFull):
    """One model's own queue (its ``max_queue``) is full: every copy serves
    ``max_concurrent`` requests and that many more wait; the caller should retry later."""

    def __init__(self, model_id: ModelId, limit: int, retry_after: float | None = None) -> None:
        super().__init__(model_id, limit)
        self.retry_after = retry_after
        self.args = (
            f"cannot queue a request for {model_id!r}: its queue is full "
            f"({limit} requests already wait; max_queue)",
        )


class WaitTimeout(ModelPoolError, TimeoutError):
    """A request waited longer than its timeout for its model to be ready."""

    def __init__(self, model_id: ModelId, waited: float, state: str) -> None:
        self.model_id, self.waited, self.state = model_id, waited, state
        super().__init__(f"gave up waiting for {model_id!r} after {waited:.1f}s (model is {state})")


class LoadFailed(ModelPoolError):
    """The backend failed to load the model (or it died); the model is now FAILED.

    ``retry_after`` is how many seconds until the next load is allowed, when the model
    is backing off after failures in a row.
    """

    def __init__(self, model_id: ModelId, reason: str, retry_after: float | None = None) -> None:
        self.model_id, self.reason, self.retry_after = model_id, reason, retry_after
        wait = f" (next try in {retry_after:.1f}s)" if retry_after is not None else ""
        super().__init__(f"model {model_id!r} failed to load: {reason}{wait}")


class CircuitOpen(LoadFailed):
    """The model failed too many times in a row; only an explicit load tries it again."""

    def __init__(self, model_id: ModelId, reason: str, failures: int) -> None:
        self.failures = failures
        super().__init__(
            model_id,
            f"{reason}; failed {failures} times in a row, so it "
            "stays failed until it is loaded explicitly",
        )


class PoolClosed(ModelPoolError):
    """The pool is not running: never started, or stopped."""


class ModelBusy(ModelPoolError):
    """A model cannot be forgotten while it is loaded, loading or waited for."""

    def __init__(self, model_id: ModelId, state: str, waiting: int) -> None:
        self.model_id = model_id
        why = f"it is {state}" + (f" with {waiting} requests waiting" if waiting else "")
        super().__init__(f"model {model_id!r} cannot be removed: {why}; unload it first")


class UnknownVersion(ModelPoolError, LookupError):
    """The model exists but has no version under this name."""

    def __init__(self, model_id: ModelId, version: str, known: Sequence[str]) -> None:
        self.model_id, self.version = model_id, version
        close = difflib.get_close_matches(version, list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        shown = ", ".join(known) or "none"
        super().__init__(f"model {model_id!r} has no version {version!r}{hint}; versions: {shown}")


class UnknownOperation(ModelPoolError, LookupError):
    """No rollout operation has this id (or it left the history)."""

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id
        super().__init__(f"no rollout operation {operation_id!r}")


class SwitchRefused(ModelPoolError):
    """A rollout was refused before any traffic moved; ``problems`` lists every reason."""

    def __init__(self, model_id: ModelId, problems: Sequence[str]) -> None:
        self.model_id, self.problems = model_id, list(problems)
        super().__init__(f"cannot switch {model_id!r}: " + "; ".join(self.problems))


class StateError(ModelPoolError):
    """A state file could not be written; the previous one, if any, is untouched."""

    def __init__(self, path: object, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot write state file {self.path}: {reason}")


class IllegalTransition(ModelPoolError, RuntimeError):
    """A lifecycle change the transition table forbids: always a bug in modelpool."""


class AccountingError(ModelPoolError, RuntimeError):
    """The ledger was asked for something that would break its sums: always a bug."""
