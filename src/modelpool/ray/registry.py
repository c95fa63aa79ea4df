"""The request routers made in this process, for the ingress's ``/admin/status``.

Not in ``router.py``: Ray copies a request router's module by value into every process
that routes (``RequestRouterConfig`` pickles it so), so a registry there would be a
different object in each copy. Functions of this module travel by reference.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, Protocol


class Reporting(Protocol):
    def reports(self) -> list[dict[str, Any]]:
        """Each replica's last routing report."""
        ...


_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def register(router: Reporting) -> None:
    _LIVE.add(router)


def live_routers() -> Iterator[Reporting]:
    """Every router registered in this process (one per handle to the pool)."""
    yield from list(_LIVE)
