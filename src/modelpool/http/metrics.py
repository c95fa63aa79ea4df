"""The server's Prometheus metrics: counters fed by pool events and finished requests,
gauges set from the pool's status at each scrape.

Every series has bounded labels, so a client cannot grow the registry:

* ``model`` only holds the pool's own ids, from its events and its status. The app
  passes the *resolved* id to ``observe_request`` (an alias or ``id@version`` becomes
  the id), or ``"unknown"`` for a model the pool does not know, never the name a
  client sent;
* ``replica`` is a copy's number (``2`` of ``chat#2``), at most a model's
  ``replicas.max``;
* ``endpoint`` is one of the server's routes ("chat/completions", "completions",
  "embeddings"), ``status`` an HTTP status the server answered with;
* ``reason`` is one of ``UNLOAD_CAUSES`` (``core/events.py``): a category of the
  scheduler's prose reason;
* ``device`` is a device with a budget, or ``host`` for the warm tier;
* ``version`` is a version an operator registered, ``strategy`` and ``status`` one of
  the rollout's few names, ``level`` one of the health monitor's;
* ``strategy`` in ``modelpool_strategy`` is a registered strategy's name (the pool
  runs only those), ``outcome`` of an evaluation one of ``EVALUATION_OUTCOMES``;
* ``fallback`` is a model id from the config's ``fallback:``, ``served`` true or false;
* ``url_host`` is the host (and port) of a webhook in the config, never its whole URL
  or headers (they may hold secrets), ``outcome`` one of ``sent``, ``failed``,
  ``dropped``.

The only module that imports ``prometheus_client``; the app imports it lazily, so the
library itself runs without the ``server`` extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from modelpool.core.events import EventKind, PoolEvent, unload_cause
from modelpool.core.ports import HOST
from modelpool.core.replicas import REPLICA_MARK
from modelpool.core.states import RESIDENT, ModelState
from modelpool.types import DeviceId

if TYPE_CHECKING:
    from modelpool.rollout import RolloutManager

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What ``generate_latest`` writes: the classic text format every scraper reads (newer
prometheus_client versions name 1.0.0 as "latest", which older Prometheus refuses)."""

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
"""Seconds: an embedding answers in milliseconds, a long generation takes minutes."""

LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
"""Seconds: a warm restore takes a fraction of a second, a large model's cold load minutes."""

HOLDING = RESIDENT | {ModelState.WARM}
"""States in which a model holds memory, on its device or in the warm tier."""

LEVELS = {"ok": 0, "warning": 1, "critical": 2}
ENDED = ("completed", "rolled_back", "aborted", "failed")
WEBHOOK_OUTCOMES = ("sent", "failed", "dropped")


EVALUATION_OUTCOMES = ("kept", "switched", "skipped")
"""How a ``strategy: auto`` evaluation ended: the strategy stayed, changed, or the
replay was skipped (it failed or ran long)."""


class ServerMetrics:
    """Prometheus metrics of one server: fed by pool events and finished requests."""

    def __init__(self) -> None:
        # A registry of its own: two servers (or two tests) in one process never clash.
        self.registry = CollectorRegistry()
        r = self.registry
        self._loads = Counter(
            "modelpool_model_loads_total",
            "Loads that finished, restored=true when the weights came back from the warm tier.",
            ["model", "restored"],
            registry=r,
        )
        self._load_seconds = Histogram(
            "modelpool_model_load_seconds",
            "Seconds from the start of a load (or restore) until the model was ready.",
            ["model", "restored"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self._load_failures = Counter(
            "modelpool_model_load_failures_total", "Loads that failed.", ["model"], registry=r
        )
        self._unloads = Counter(
            "modelpool_model_unloads_total",
            "Times a model left its device (unloaded, or offloaded to the warm tier), by reason.",
            ["model", "reason"],
            registry=r,
        )
        self._requests = Counter(
            "modelpool_requests_total",
            "Finished /v1 requests by HTTP status.",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self._request_errors = Counter(
            "modelpool_request_errors_total",
            "Finished /v1 requests answered with a status of 400 or more.",
            ["model", "endpoint"],
            registry=r,
        )
        self._request_seconds = Histogram(
            "modelpool_request_seconds",
            "Seconds from a /v1 request's arrival to its answer's last byte (streams included).",
            ["model", "endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self._state = Gauge(
            "modelpool_model_state",
            "1 for the model's current state, 0 for the others.",
            ["model", "state"],
            registry=r,
        )
        self._model_memory = Gauge(
            "modelpool_model_memory_bytes",
            "Bytes the model holds on its device or in the warm tier (0 when it holds none).",
            ["model"],
            registry=r,
        )
        self._device_model_memory = Gauge(
            "modelpool_device_model_memory_bytes",
            "Bytes booked on a device by each model there (a spread model on each device).",
            ["device", "model"],
            registry=r,
        )
        self._fallbacks = Counter(
            "modelpool_fallbacks_total",
            "Requests for a model that could not load, handed to its fallback "
            "(served=false: the fallback refused them too).",
            ["model", "fallback", "served"],
            registry=r,
        )
        self._leases = Gauge(
            "modelpool_model_leases",
            "Leases out on the model (requests using it).",
            ["model"],
            registry=r,
        )
        self._replica_state = Gauge(
            "modelpool_replica_state",
            "For a model with replicas: 1 for each copy's current state, 0 for the others.",
            ["model", "replica", "state"],
            registry=r,
        )
        self._replica_memory = Gauge(
            "modelpool_replica_memory_bytes",
            "For a model with replicas: bytes each copy holds (0 when it holds none).",
            ["model", "replica"],
            registry=r,
        )
        self._replica_leases = Gauge(
            "modelpool_replica_leases",
            "For a model with replicas: leases out on each copy (requests in flight).",
            ["model", "replica"],
            registry=r,
        )
        self._budget = Gauge(
            "modelpool_memory_budget_bytes", "The pool's usable budget.", ["device"], registry=r
        )
        self._used = Gauge(
            "modelpool_memory_used_bytes",
            "Bytes committed to resident models (unloading ones count until they are gone).",
            ["device"],
            registry=r,
        )
        self._reserved = Gauge(
            "modelpool_memory_reserved_bytes",
            "Bytes reserved for models being loaded.",
            ["device"],
            registry=r,
        )
        self._observed_used = Gauge(
            "modelpool_memory_observed_used_bytes",
            "Bytes in use on the device as the memory probe reads it (all processes).",
            ["device"],
            registry=r,
        )
        self._observed_total = Gauge(
            "modelpool_memory_observed_total_bytes",
            "The device's total memory as the memory probe reads it.",
            ["device"],
            registry=r,
        )
        self._queue_waiting = Gauge(
            "modelpool_queue_waiting", "Requests waiting for a model.", registry=r
        )
        self._queue_max = Gauge(
            "modelpool_queue_max", "Requests that may wait before new ones are refused.", registry=r
        )

        self._version_requests = Gauge(
            "modelpool_version_window_requests",
            "Requests a model version finished within the health window.",
            ["model", "version"],
            registry=r,
        )
        self._version_error_rate = Gauge(
            "modelpool_version_error_rate",
            "Failed share of a model version's requests within the health window.",
            ["model", "version"],
            registry=r,
        )
        self._version_latency = Gauge(
            "modelpool_version_latency_seconds",
            "Latency percentiles of a model version's requests within the health window.",
            ["model", "version", "quantile"],
            registry=r,
        )
        self._version_level = Gauge(
            "modelpool_version_health_level",
            "A model version's health: 0 ok, 1 warning, 2 critical.",
            ["model", "version"],
            registry=r,
        )
        self._version_weight = Gauge(
            "modelpool_version_traffic_share",
            "The share of a model's traffic a version receives (0..1).",
            ["model", "version"],
            registry=r,
        )
        self._alerts = Counter(
            "modelpool_alerts_total",
            "Health alerts raised, by level.",
            ["model", "version", "level"],
            registry=r,
        )
        self._active_alerts = Gauge(
            "modelpool_alerts_active", "Health alerts raised and not resolved.", registry=r
        )
        self._rollouts = Counter(
            "modelpool_rollouts_total",
            "Rollout operations that ended, by strategy and outcome.",
            ["model", "strategy", "status"],
            registry=r,
        )

        self._strategy = Gauge(
            "modelpool_strategy",
            "1 for the eviction strategy the pool runs now (strategy: auto may change it).",
            ["strategy"],
            registry=r,
        )
        self._evaluations = Counter(
            "modelpool_strategy_evaluations_total",
            "strategy: auto evaluations (replays of the recent traffic), by outcome.",
            ["outcome"],
            registry=r,
        )
        for outcome in EVALUATION_OUTCOMES:
            self._evaluations.labels(outcome)  # at 0 from the start, for rate()

        self._webhook_deliveries = Counter(
            "modelpool_webhook_deliveries_total",
            "Alerts handed to a webhook, by how it ended: sent, failed (given up after its "
            "retries) or dropped (pushed out of a full queue, or unsent at shutdown).",
            ["url_host", "outcome"],
            registry=r,
        )
        self._audit_failures = Counter(
            "modelpool_audit_write_failures_total",
            "Audit log entries that could not be written (the operations went on).",
            registry=r,
        )

    def add_webhooks(self, url_hosts: Iterable[str]) -> None:
        """Webhooks' series exist at 0 from the start, so that rate() sees the first one."""
        for url_host in url_hosts:
            for outcome in WEBHOOK_OUTCOMES:
                self._webhook_deliveries.labels(url_host, outcome)

    def observe_webhook(self, url_host: str, outcome: str) -> None:
        """One alert to the webhook at ``url_host`` ended in ``outcome``."""
        self._webhook_deliveries.labels(url_host, outcome).inc()

    def audit_write_failed(self) -> None:
        """One entry of the audit log could not be written."""
        self._audit_failures.inc()

    def observe_event(self, event: PoolEvent) -> None:
        """Count what ``event`` says happened (the app feeds every event of ``events()``)."""
        model, kind, detail = event.model_id, event.kind, event.detail
        if kind is EventKind.STRATEGY_EVALUATED:
            self._evaluations.labels(_evaluation_outcome(detail)).inc()
        if model is None:
            return  # pool-wide events (budget, drift, strategy) show in the gauges instead
        if kind is EventKind.LOADED:
            restored = "true" if detail.get("restored") else "false"
            self._loads.labels(model, restored).inc()
            seconds = detail.get("seconds")
            if seconds is not None:
                self._load_seconds.labels(model, restored).observe(seconds)
        elif kind is EventKind.LOAD_FAILED:
            self._load_failures.labels(model).inc()
        elif kind in (EventKind.UNLOAD_STARTED, EventKind.OFFLOAD_STARTED):
            self._unloads.labels(model, unload_cause(str(detail.get("reason", "")))).inc()
        elif kind is EventKind.LOST:
            self._unloads.labels(model, "lost").inc()
        elif kind is EventKind.ALERT and not detail.get("resolved"):
            self._alerts.labels(model, str(detail.get("version")), str(detail["level"])).inc()
        elif kind is EventKind.ROLLOUT and detail.get("status") in ENDED:
            self._rollouts.labels(model, str(detail["strategy"]), str(detail["status"])).inc()
        elif kind is EventKind.FALLBACK:
            served = "true" if detail.get("served") else "false"
            self._fallbacks.labels(model, str(detail.get("fallback")), served).inc()

    def observe_request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        """One finished /v1 request. ``model`` is the resolved id or ``"unknown"``, never the
        client's text; ``seconds`` runs until the last chunk of a stream."""
        self._requests.labels(model, endpoint, str(status)).inc()
        if status >= 400:
            self._request_errors.labels(model, endpoint).inc()
        self._request_seconds.labels(model, endpoint).observe(seconds)

    def render(self, status: Mapping[str, Any], rollouts: RolloutManager | None = None) -> bytes:
        """The exposition text, gauges set from ``status`` (``pool.get_resource_status()``)
        and the health and traffic split of ``rollouts``."""
        if rollouts is not None:
            self._set_health(rollouts)
        for model, view in status["model_resources"].items():
            state = ModelState(view["status"])
            for each in ModelState:
                self._state.labels(model, each).set(1 if each is state else 0)
            # The status reports the estimate for a model that holds nothing; here 0.
            self._model_memory.labels(model).set(view["memory_bytes"] if state in HOLDING else 0)
            self._leases.labels(model).set(view["leases"])
            # Counters exist at 0 before their first event, so that rate() and increase()
            # see the first load and the first failure too.
            self._loads.labels(model, "false")
            self._load_failures.labels(model)
            for copy in view.get("replicas", ()):
                self._set_replica(model, copy)
        self._device_model_memory.clear()  # only the models booked now show
        for device, books in status["memory_info"].items():
            for model, size in books.get("models", {}).items():
                self._device_model_memory.labels(device, model).set(size)
            self._set_books(device, books)
            self._set_reading(self._observed_used, device, books.get("observed_used"))
            self._set_reading(self._observed_total, device, books.get("observed_total"))
        self._set_books(HOST, status["warm_memory"])
        self._strategy.clear()  # only the strategy in force shows
        if "strategy" in status:
            self._strategy.labels(status["strategy"]).set(1)
        self._queue_waiting.set(status["queue"]["waiting"])
        self._queue_max.set(status["queue"]["max"])
        return generate_latest(self.registry)

    def _set_health(self, rollouts: RolloutManager) -> None:
        health = rollouts.health.snapshot()
        for series in health["series"]:
            labels = (series["model_id"], str(series["version"]))
            self._version_requests.labels(*labels).set(series["requests"])
            self._version_error_rate.labels(*labels).set(series["error_rate"])
            self._version_level.labels(*labels).set(LEVELS[series["level"]])
            for quantile in ("p50", "p95", "p99"):
                value = series[quantile]
                if value is not None:
                    self._version_latency.labels(*labels, quantile).set(value)
        self._active_alerts.set(len(health["alerts"]))
        self._version_weight.clear()  # versions come and go; only the present ones show
        for model in rollouts.models_with_versions():
            shares = dict(rollouts.weights(model))
            for entry in rollouts.versions(model):
                version = entry["version"]
                self._version_weight.labels(model, version).set(shares.get(version, 0.0))

    def _set_replica(self, model: str, copy: Mapping[str, Any]) -> None:
        replica = str(copy["id"]).rpartition(REPLICA_MARK)[2]  # "2" of "chat#2"
        state = ModelState(copy["status"])
        for each in ModelState:
            self._replica_state.labels(model, replica, each).set(1 if each is state else 0)
        held = copy["memory_bytes"] if state in HOLDING else 0
        self._replica_memory.labels(model, replica).set(held)
        self._replica_leases.labels(model, replica).set(copy["leases"])

    def _set_books(self, device: DeviceId, books: Mapping[str, Any]) -> None:
        """One device's figures from the ledger's snapshot."""
        self._budget.labels(device).set(books["budget"])
        self._used.labels(device).set(books["committed"])
        self._reserved.labels(device).set(books["reserved"])

    @staticmethod
    def _set_reading(gauge: Gauge, device: DeviceId, value: int | None) -> None:
        # No reading this time (no probe, or it failed): drop the series rather than
        # repeat a stale figure as if it were current.
        if value is None:
            gauge.remove(device)
        else:
            gauge.labels(device).set(value)


def _evaluation_outcome(detail: Mapping[str, Any]) -> str:
    if detail.get("error"):
        return "skipped"
    return "switched" if detail.get("switched") else "kept"
