"""What an alert webhook receives: the alert as JSON-ready data with a line of text.

Pure: no I/O, no clock of its own (the caller passes the wall time). The payload is
the ``Alert``'s fields, with two changes for a receiver in another process:

- ``at`` is the wall time (ISO 8601, UTC) the alert was handed over, not the monitor's
  monotonic clock, which means nothing outside this process;
- ``status`` is ``raised`` or ``resolved`` beside the ``resolved`` flag, and ``text``
  says it all in one line, which Slack-compatible receivers (Slack, Mattermost,
  Rocket.Chat, Discord's ``/slack`` endpoint) show as the message::

      CRITICAL: smollm2@v2 error rate 0.31 >= 0.20 (raised)
      CRITICAL: smollm2@v2 error rate 0.02, threshold 0.20 (resolved)

A resolved alert carries the level it had while active, so a receiver that filters by
level hears the end of what it heard begin.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from modelpool.monitor.health import Alert

__all__ = ["SOURCE", "alert_text", "alert_payload", "wanted"]

SOURCE = "modelpool"
"""The ``source`` of every payload: which system a receiver heard from."""

_METRIC_NAMES = {"error_rate": "error rate", "p95": "p95 latency"}


def _figure(metric: str, value: float) -> str:
    return f"{value:.2f}s" if metric == "p95" else f"{value:.2f}"


def alert_text(alert: Alert) -> str:
    """One line a person reads: level, model@version, metric, value and threshold."""
    name = alert.model_id if alert.version is None else f"{alert.model_id}@{alert.version}"
    metric = _METRIC_NAMES.get(alert.metric, alert.metric)
    value, threshold = _figure(alert.metric, alert.value), _figure(alert.metric, alert.threshold)
    if alert.resolved:
        # Back to ok may also mean too few requests to judge: the value can still be over
        # the threshold, so no comparison is claimed.
        return f"{alert.level.upper()}: {name} {metric} {value}, threshold {threshold} (resolved)"
    return f"{alert.level.upper()}: {name} {metric} {value} >= {threshold} (raised)"


def alert_payload(alert: Alert, wall_time: float) -> dict[str, Any]:
    """The JSON body for ``alert``, handed over at ``wall_time`` (seconds since the epoch)."""
    return {
        "text": alert_text(alert),
        "source": SOURCE,
        "status": "resolved" if alert.resolved else "raised",
        "model_id": alert.model_id,
        "version": alert.version,
        "level": str(alert.level),
        "metric": alert.metric,
        "value": alert.value,
        "threshold": alert.threshold,
        "resolved": alert.resolved,
        "at": datetime.fromtimestamp(wall_time, UTC).isoformat().replace("+00:00", "Z"),
    }


def wanted(alert: Alert, levels: Collection[str]) -> bool:
    """Whether a receiver that takes ``levels`` hears ``alert`` (raised or resolved)."""
    return str(alert.level) in levels
