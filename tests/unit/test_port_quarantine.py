"""A port handed to one model's server is not handed to another for a while.

Found by a one-hour soak: a request holding a lease on a server that had just been
killed reached the server the OS gave the freed port to next, so one model answered
for another (5 of 73,000 chats). A quarantined port makes such a request meet a
refused connection, a clear 502, instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modelpool.backends import process


class FakeSocket:
    """Stands in for ``socket.socket``: binding to port 0 gets the next scripted port."""

    offered: Iterator[int]

    def __init__(self, *args: Any) -> None:
        self.port = 0

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def bind(self, address: tuple[str, int]) -> None:
        self.port = next(FakeSocket.offered)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


@pytest.fixture
def offered(monkeypatch: pytest.MonkeyPatch) -> type[FakeSocket]:
    monkeypatch.setattr(process.socket, "socket", FakeSocket)
    monkeypatch.setattr(process, "_handed_out", {})
    return FakeSocket


def test_a_port_the_os_offers_again_is_passed_over(offered: type[FakeSocket]) -> None:
    offered.offered = iter([5000, 5000, 5000, 5001])
    assert process._free_port(lambda: 0.0) == 5000
    assert process._free_port(lambda: 10.0) == 5001  # 5000 was offered twice more


def test_the_quarantine_ends(offered: type[FakeSocket]) -> None:
    offered.offered = iter([5000, 5000])
    assert process._free_port(lambda: 0.0) == 5000
    later = process.PORT_QUARANTINE_SECONDS + 1
    assert process._free_port(lambda: later) == 5000


def test_no_fresh_port_at_all_is_a_clear_error(offered: type[FakeSocket]) -> None:
    offered.offered = iter([5000] * 100)
    process._free_port(lambda: 0.0)
    with pytest.raises(RuntimeError, match="no port free"):
        process._free_port(lambda: 1.0)
