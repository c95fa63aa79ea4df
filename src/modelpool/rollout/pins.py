"""The versions an operation pins, so that neither is evicted while they share traffic."""

from __future__ import annotations

from typing import Protocol


class Pinning(Protocol):
    """What ``Pins`` asks of the pool (``ModelPool`` is one)."""

    def pinned(self, model: str) -> bool: ...

    def pin(self, model: str) -> None: ...

    def unpin(self, model: str) -> None: ...


class Pins:
    """Records pinned for operations, each with whether it was pinned before: a record
    an operator pinned stays pinned when the operation lets it go."""

    def __init__(self, pool: Pinning) -> None:
        self._pool = pool
        self._was_pinned: dict[str, bool] = {}

    def __contains__(self, record: object) -> bool:
        """Whether an operation holds ``record`` now."""
        return record in self._was_pinned

    def hold(self, record: str) -> None:
        if record not in self._was_pinned:
            self._was_pinned[record] = self._pool.pinned(record)
            self._pool.pin(record)

    def release(self, record: str) -> None:
        was_pinned = self._was_pinned.pop(record, None)
        if was_pinned is False:
            self._pool.unpin(record)
