"""The settings sections of a config: ``server`` (with ``tls``), ``pool`` (with
``auto_options``), ``health`` and ``cluster``; one frozen pydantic model each, checked as the config
is read. ``PoolSettings`` is what the pool, the scheduler and the simulator are given.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from modelpool.config.checks import (
    checks_files,
    plugins_of,
    registered,
    report,
)
from modelpool.config.fields import (
    BudgetDevice,
    Seconds,
    Size,
)
from modelpool.config.versions import (
    ThresholdSettings,
    threshold_problems,
)
from modelpool.plugins import POLICIES

DEFAULT_STATE_DIR = Path("~/.local/state/modelpool")


def default_state_dir() -> Path:
    """Where state (measured footprints, load times) lives by default, expanded."""
    return DEFAULT_STATE_DIR.expanduser()


def _tls_file(value: str, info: ValidationInfo) -> str:
    if checks_files(info):
        path = os.path.expanduser(value)
        if not os.path.isfile(path):
            what = "a folder, not a file" if os.path.isdir(path) else "no file there"
            raise ValueError(f"{path!r}: {what}; the server cannot start with TLS")
    return value


TlsFile = Annotated[str, Field(min_length=1), AfterValidator(_tls_file)]
"""A PEM file of the server's TLS settings (``~`` expanded); it must exist."""


class TlsSettings(BaseModel):
    """HTTPS: the server's certificate and private key, PEM files it reads at start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cert: TlsFile
    """The certificate, followed by any intermediate certificates."""
    key: TlsFile
    """Its private key, not encrypted (readable by the server's user only)."""

    @model_validator(mode="after")
    def _usable(self, info: ValidationInfo) -> Self:
        if checks_files(info):
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                # The password callback refuses an encrypted key instead of prompting.
                context.load_cert_chain(self.cert_path, self.key_path, password=_no_password)
            except (ssl.SSLError, OSError, ValueError) as error:
                reason = str(error)
                if isinstance(error, ssl.SSLError):
                    reason = _TLS_REASONS.get(error.reason or "PEM_LIB", reason)
                message = f"cannot use this certificate and key together: {reason}"
                raise ValueError(message) from None
        return self

    @property
    def cert_path(self) -> str:
        return os.path.expanduser(self.cert)

    @property
    def key_path(self) -> str:
        return os.path.expanduser(self.key)


_TLS_REASONS = {
    "KEY_VALUES_MISMATCH": "the key is not this certificate's",
    "PEM_LIB": "expected PEM files (-----BEGIN ...), the certificate first",
}
"""OpenSSL's terse reasons, in words (it gives none for a file that is not PEM)."""


def _no_password() -> str:
    raise ValueError("the key is encrypted; give the server an unencrypted copy")


class ServerSettings(BaseModel):
    """The HTTP server: where it listens and which API keys it accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    api_keys: list[str] = Field(default_factory=list)
    """Keys accepted on every route but ``/healthz`` (also ``MODELPOOL_API_KEYS``)."""
    admin_keys: list[str] = Field(default_factory=list)
    """When set, only these open ``/admin`` and ``/metrics`` (also ``MODELPOOL_ADMIN_KEYS``)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host names accepted in the ``Host`` header besides the loopback ones."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Web origins (``https://app.example``) whose pages may call the server, besides its
    own; a browser request from any other ``Origin`` gets 403."""
    max_body: Size = 16 * 1024**2
    """Largest request body accepted; larger ones get 413."""
    header_timeout: Annotated[Seconds, Field(gt=0)] = 10.0
    """How long a connection may take to send a request's headers (slowloris) before it
    is closed; the clock starts when it opens, or at the first byte of its next request."""
    body_timeout: Annotated[Seconds, Field(gt=0)] = 60.0
    """How long a request's body may take to arrive after its headers before the
    connection is closed. Answers are never timed: a long stream keeps going."""
    keep_alive_timeout: Annotated[Seconds, Field(gt=0)] = 5.0
    """How long a connection may stay idle between requests before it is closed."""
    max_connections: int = Field(default=512, ge=1)
    """Connections open at once; more are answered 503 and closed. Keep it well under the
    process's file-descriptor limit (``ulimit -n``, often 1,024)."""
    drain_timeout: Annotated[Seconds, Field(ge=0)] = 30.0
    """On shutdown, how long in-flight requests may run before everything stops."""
    access_log: bool = True
    """One log line per request (uvicorn's access log)."""
    tls: TlsSettings | None = None
    """HTTPS with this certificate and key (None: plain HTTP)."""
    audit_max_bytes: Annotated[Size, Field(ge=1024)] = 10 * 1000**2
    """Size of ``<state_dir>/audit.log`` past which it is rotated to ``audit.log.1``."""
    audit_keep: int = Field(default=5, ge=0)
    """Rotated audit logs kept (``audit.log.1`` ... ``audit.log.N``); older ones are deleted."""
    loading_keepalive: Annotated[Seconds, Field(gt=0, le=60)] = 1.0
    """While a streamed request waits for its model to load, an SSE comment line goes out
    this often, so that clients and proxies with read timeouts keep the connection."""
    loading_messages: bool = False
    """Also tell a streamed chat request how its model's load goes, as
    ``reasoning_content`` deltas (shown by chat front ends as the model's thinking)."""


AUTO_STRATEGY = "auto"
"""The strategy that picks a registered one by replaying the pool's own traffic."""
AUTO_STARTS_FROM = "hybrid"
"""What a pool with ``strategy: auto`` runs until its first evaluation says otherwise."""


class AutoOptions(BaseModel):
    """``strategy: auto``: how often the pool replays its recent traffic, and when it switches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval: Annotated[Seconds, Field(gt=0)] = 300.0
    """Seconds between evaluations."""
    window: Annotated[Seconds, Field(gt=0)] = 3600.0
    """The traffic replayed: requests of the last ``window`` seconds..."""
    max_requests: int = Field(default=100_000, ge=1)
    """...and at most this many of them (the most recent)."""
    candidates: list[str] = Field(default_factory=list)
    """Strategies compared (empty: every registered one)."""
    hysteresis: float = Field(default=0.10, ge=0, lt=1)
    """A candidate must wait this share less in total than the current strategy to win."""
    timeout: Annotated[Seconds, Field(gt=0)] = 60.0
    """A replay running longer is skipped (logged); the strategy stays."""
    replay_in: Literal["process", "thread"] = "process"
    """Where replays run: a worker process of their own (requests never share the
    interpreter with one), or a thread of the server's (cheaper to start; a replay then
    holds the interpreter lock in turns with the requests)."""

    @field_validator("candidates")
    @classmethod
    def _known_candidates(cls, names: list[str], info: ValidationInfo) -> list[str]:
        plugins = plugins_of(info)
        return [registered(plugins.policies if plugins else POLICIES, str(n)) for n in names]


class PoolSettings(BaseModel):
    """How the pool decides: eviction strategy, memory budgets, queue and timers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str = "hybrid"
    """A registered strategy, or ``auto``: replay the recent traffic every
    ``auto_options.interval`` and switch to the strategy that would have waited least."""
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    auto_options: AutoOptions = Field(default_factory=AutoOptions)
    """Used when ``strategy`` is ``auto``."""
    budgets: dict[BudgetDevice, Size] = Field(default_factory=dict)
    warm_budget: Size = 0
    """Host RAM for WARM copies of evicted models (0: no warm tier): in-process weights,
    sleeping servers, model files kept in the page cache."""
    headroom: Size = 0
    """Bytes kept free on each probed device on top of what other processes use."""
    drift_threshold: Size = 1024**3
    """Change in memory used outside the pool's books that is reported as drift."""
    release_timeout: Annotated[Seconds, Field(gt=0)] = 10.0
    """How long an unload waits for the probe to show a GPU's memory back."""
    probe: Literal["auto", "nvml", "torch", "system", "static"] = "auto"
    state_dir: Path = DEFAULT_STATE_DIR
    """Stored as written; call ``.expanduser()`` on use."""
    max_queue: int = Field(default=1024, ge=1)
    wait_timeout: Annotated[Seconds, Field(gt=0)] = 300.0
    starvation_limit: Annotated[Seconds, Field(ge=0)] = 10.0
    """How long a waiting request may be passed over before it goes first."""
    restart_backoff: Annotated[Seconds, Field(ge=0)] = 1.0
    """Wait before a failed model is loaded again; doubles with each failure in a row."""
    max_restart_backoff: Annotated[Seconds, Field(ge=0)] = 60.0
    max_failures: int = Field(default=5, ge=1)
    """Failures in a row after which only an explicit load tries again."""
    max_models: int | None = Field(default=None, ge=1)
    """At most this many models loaded at once in the pool (None: memory decides alone)."""
    device_max_models: dict[BudgetDevice, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    """At most this many models loaded at once on a device (``cuda:0: 2``)."""
    placement: Literal["cost", "most_room", "first_fit"] = "cost"
    """How ``device: auto`` picks a device: where making room costs least (reload cost of
    the victims, then best fit), the most room first, or the first in budget order."""
    group_scope: Literal["device", "box"] = "device"
    """Where an exclusive ``group`` holds: one member per device, or one in the whole box."""
    high_watermark: float | None = Field(default=None, gt=0, le=1)
    """Share of a device's budget above which idle models are unloaded ahead of need
    (seed 000's ``auto_switch_threshold``, e.g. 0.8); None: only when room is needed."""
    low_watermark: float | None = Field(default=None, ge=0, lt=1)
    """Where unloading ahead of need stops (default: ``high_watermark`` - 0.1)."""
    prepare_backends: bool = True
    """Import in-process backends' libraries (torch...) in the background at start, so
    the first request pays only its load; off: the first load imports them."""
    reap_interval: Annotated[Seconds, Field(gt=0)] = 1.0
    """How often idle models are checked against their ``ttl`` and the probe is read."""

    def changed(self, **changes: Any) -> PoolSettings:
        """These settings with ``changes`` (those not None) applied and checked as the
        config checks them; a name that is not a setting is a TypeError."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"unknown pool settings: {', '.join(unknown)}")
        given = {name: value for name, value in changes.items() if value is not None}
        if not given:
            return self
        return type(self).model_validate(self.model_dump() | given)

    @property
    def low_watermark_in_force(self) -> float:
        """The low watermark in force: given, or 0.1 below the high one."""
        if self.low_watermark is not None:
            return self.low_watermark
        return max(0.0, (self.high_watermark or 0.0) - 0.1)

    @model_validator(mode="after")
    def _watermarks_in_order(self, info: ValidationInfo) -> Self:
        high, low = self.high_watermark, self.low_watermark
        if low is not None and high is None:
            message = "low_watermark needs a high_watermark above it"
            return report(self, [((), message)], info, ("pool", "low_watermark"))
        if low is not None and high is not None and low >= high:
            message = f"must be below high_watermark ({high:g}), got {low:g}"
            return report(self, [((), message)], info, ("pool", "low_watermark"))
        return self

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str, info: ValidationInfo) -> str:
        if str(name) == AUTO_STRATEGY:
            return AUTO_STRATEGY
        plugins = plugins_of(info)
        # An enum member becomes its plain name.
        return registered(plugins.policies if plugins else POLICIES, str(name))

    @property
    def starting_strategy(self) -> str:
        """The strategy the pool starts with: ``auto`` starts from ``AUTO_STARTS_FROM``."""
        return AUTO_STARTS_FROM if self.strategy == AUTO_STRATEGY else self.strategy

    @model_validator(mode="after")
    def _options_fit_the_strategy(self, info: ValidationInfo) -> Self:
        plugins = plugins_of(info)
        if plugins is None:
            return self  # checked by whoever passes the registries (the wiring), or on use
        # Build the policy once: its constructor is what knows which options it takes.
        try:
            plugins.policies.get(self.starting_strategy)(**self.strategy_options)
        except (TypeError, ValueError) as error:
            message = f"not valid for strategy {self.strategy!r}: {error}"
            return report(self, [((), message)], info, ("pool", "strategy_options"))
        return self


class HealthSettings(BaseModel):
    """How model versions are judged (``monitor.health``) and rollouts paced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: Annotated[Seconds, Field(gt=0)] = 60.0
    """Each model version is judged on its requests of the last ``window`` seconds."""
    interval: Annotated[Seconds, Field(gt=0)] = 1.0
    """How often health is checked and rollouts advance."""
    thresholds: ThresholdSettings = Field(default_factory=ThresholdSettings)
    """Every model's thresholds; a model's own ``thresholds`` replace the keys they give."""
    max_operations: int = Field(default=200, ge=1)
    """Rollout operations kept in the history."""

    @model_validator(mode="after")
    def _warning_not_above_critical(self, info: ValidationInfo) -> Self:
        given = self.thresholds.model_fields_set
        problems = threshold_problems(self.thresholds.model_dump(), given)
        return report(self, problems, info, ("health", "thresholds"))


class ClusterSettings(BaseModel):
    """``modelpool serve --ray``: the pool on Ray Serve (``modelpool.ray``). Each of
    ``replicas`` Ray Serve replicas runs one pool built from this same file, over the
    resources Ray gives it (its ``ray_actor_options``: ``num_cpus``, ``num_gpus``,
    ``resources``); a request router in front ranks them by what they hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    replicas: int = Field(default=1, ge=1)
    """Ray Serve replicas of the pool, usually one per node (its GPUs)."""
    num_cpus: float = Field(default=1.0, ge=0)
    """CPUs Ray reserves for each replica (the pool and its proxying)."""
    num_gpus: float = Field(default=0.0, ge=0)
    """GPUs Ray gives each replica (``CUDA_VISIBLE_DEVICES`` is set to them)."""
    resources: dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )
    """Custom Ray resources each replica needs (``{node_a: 1}`` pins it to a node)."""
    max_ongoing_requests: int = Field(default=256, ge=1)
    """Requests one replica takes at once; the pool queues what waits for a model."""
    queue_timeout: Annotated[Seconds, Field(gt=0)] = 30.0
    """How long a request may wait for a replica to take it (every replica at
    ``max_ongoing_requests``, or none up) before the ingress answers 503 with
    Retry-After. Waiting for a model to load, once taken, is not counted."""
    stats_period: Annotated[Seconds, Field(gt=0, le=60)] = 0.5
    """How often each replica reports its pool to the router (``record_routing_stats``)."""
    route_hint_seconds: Annotated[Seconds, Field(gt=0)] = 10.0
    """How long the router counts a model as on its way to the replica it routed it to,
    until that replica's report says so itself (its reports come a period late)."""
    http_host: str = "127.0.0.1"
    """Where Ray Serve's HTTP proxy listens (every node runs one)."""
    http_port: int = Field(default=8000, ge=1, le=65535)

    def actor_options(self) -> dict[str, Any]:
        """The ``ray_actor_options`` of each pool replica."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            options["resources"] = dict(self.resources)
        return options
