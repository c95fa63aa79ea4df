"""The operations a ``RolloutManager`` keeps, and each model's live one.

Every operation is kept, oldest first, so that its status can be asked after it
ended; past ``keep`` of them the oldest ended ones are forgotten. A model has at most
one live operation (pending or running): the one a new switch must wait for, and the
one a tick moves on. Operations read back from the state file are kept, never live.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from modelpool.errors import UnknownOperation
from modelpool.rollout.decisions import to_forget
from modelpool.rollout.operation import Operation, Status


class OperationBook:
    """Operations by id (oldest first) and by model (the live one)."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._all: dict[str, Operation] = {}
        self._live: dict[str, Operation] = {}

    def __iter__(self) -> Iterator[Operation]:
        """Every operation kept, oldest first."""
        return iter(list(self._all.values()))

    def open(self, op: Operation) -> None:
        """Keep ``op`` as its model's live operation; forget what is past the limit."""
        self._all[op.id] = op
        self._live[op.model] = op
        for old in to_forget(self._all.values(), self._keep):
            del self._all[old.id]

    def keep(self, op: Operation) -> None:
        """Keep ``op``, read back from the state file."""
        self._all[op.id] = op

    def close(self, op: Operation) -> None:
        """``op`` has ended: its model has no live operation any more."""
        if self._live.get(op.model) is op:
            del self._live[op.model]

    def get(self, operation_id: str) -> Operation:
        op = self._all.get(operation_id)
        if op is None:
            raise UnknownOperation(operation_id)
        return op

    def live(self, model: str) -> Operation | None:
        """``model``'s pending or running operation, if it has one."""
        return self._live.get(model)

    def running(self) -> list[Operation]:
        return [op for op in self._live.values() if op.status is Status.RUNNING]

    def summaries(self, model: str | None = None) -> list[dict[str, Any]]:
        """Summaries of the operations kept, newest first (of ``model`` if given)."""
        return [
            op.summary()
            for op in reversed(self._all.values())
            if model is None or op.model == model
        ]
