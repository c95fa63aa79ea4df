"""Pool errors become OpenAI-shaped answers that say what to do and leak nothing."""

from __future__ import annotations

import json

import pytest

from modelpool.errors import (
    CircuitOpen,
    DoesNotFit,
    Holder,
    InsufficientMemory,
    LoadFailed,
    ModelPoolError,
    ModelQueueFull,
    PoolClosed,
    QueueFull,
    UnknownModel,
    WaitTimeout,
)
from modelpool.http.errors import from_pool_error

SECRET_REASON = "exited with 1; log tail: /home/me/models/x.gguf: bad magic"


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (UnknownModel("gpt-17", ["a", "b"]), 404, "model_not_found", None),
        (QueueFull("a", 8), 503, "queue_full", "5"),
        (ModelQueueFull("a", 8), 429, "model_queue_full", "5"),
        (ModelQueueFull("a", 8, retry_after=1.2), 429, "model_queue_full", "2"),
        (WaitTimeout("a", 30.0, "loading"), 503, "wait_timeout", "5"),
        (InsufficientMemory("a", "cpu", 10, 2, [Holder("b", 8, "pinned")]), 503,
         "insufficient_memory", "5"),
        (DoesNotFit("a", "cpu", 10, 5), 503, "insufficient_memory", None),
        (LoadFailed("a", SECRET_REASON, retry_after=2.5), 503, "load_failed", "3"),
        (CircuitOpen("a", SECRET_REASON, 5), 503, "load_failed", None),
        (PoolClosed("stopped"), 503, "shutting_down", None),
        (ModelPoolError("odd"), 500, None, None),
    ],
)  # fmt: skip
def test_each_pool_error_has_its_answer(
    error: ModelPoolError, status: int, code: str | None, retry_after: str | None
) -> None:
    response = from_pool_error(error).response()
    body = json.loads(bytes(response.body))
    assert response.status_code == status
    assert body["error"]["code"] == code
    assert response.headers.get("retry-after") == retry_after
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "/home/me" not in body["error"]["message"]
    assert "log tail" not in body["error"]["message"]


def test_a_failed_load_points_to_where_the_details_are() -> None:
    message = from_pool_error(LoadFailed("chat", SECRET_REASON)).message
    assert message == "The model 'chat' failed to load; GET /admin/models/chat has the details"
