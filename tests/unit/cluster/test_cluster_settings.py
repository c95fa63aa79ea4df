"""The ``cluster:`` section's request limits, as ``modelpool serve --ray`` reads them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelpool.config import ClusterSettings


def test_queue_timeout_takes_a_duration_and_defaults_to_half_a_minute() -> None:
    assert ClusterSettings().queue_timeout == 30.0
    assert ClusterSettings.model_validate({"queue_timeout": "2s"}).queue_timeout == 2.0


@pytest.mark.parametrize("bad", [0, -1, "soon"])
def test_a_queue_timeout_that_never_lets_a_request_wait_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="queue_timeout"):
        ClusterSettings.model_validate({"queue_timeout": bad})
