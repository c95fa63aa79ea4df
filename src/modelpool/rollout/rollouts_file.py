"""``<state_dir>/rollouts.json``: what the rollouts keep across restarts, and reading it back.

The file is a ``StateFile`` (atomic writes, a ``.bak`` of the last good copy, damaged
files set aside) of kind ``rollouts``, version 1. Its data::

    {"models": {model: {"versions": {version: {"settings", "author", "notes", "created"}},
                        "weights": [[version, share], ...] or null}},
     "operations": [operation, ...]}

``models`` is what ``VersionRegistry.saved`` writes (versions registered at run time
and each model's split) and ``VersionRegistry.restore`` reads; each operation is
``Operation.to_dict``, oldest first. It is written after every change.

Like ``StateFile``, this module does not log: what it set aside or could not read
comes back in ``warnings``, and the manager decides where they go. What a restart
does with an operation that was still running is the manager's business too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpool.core.statefile import StateFile
from modelpool.rollout.operation import Operation

STATE_FILE = "rollouts.json"
STATE_KIND, STATE_VERSION = "rollouts", 1


@dataclass
class SavedRollouts:
    """What ``RolloutsFile.load`` read back."""

    models: dict[str, Any]
    """For ``VersionRegistry.restore``."""
    operations: list[Operation]
    """Oldest first, as they were saved (those that could not be read are left out)."""


class RolloutsFile:
    """The rollouts' state file under ``state_dir``."""

    def __init__(self, state_dir: str | Path) -> None:
        self._file = StateFile(
            Path(state_dir) / STATE_FILE, STATE_KIND, STATE_VERSION, check=_check
        )
        self.warnings: list[str] = []
        """What the last ``load`` set aside or dropped, a line each."""

    @property
    def path(self) -> Path:
        return self._file.path

    def save(self, models: dict[str, Any], operations: Iterable[Operation]) -> None:
        """Write the registry's ``models`` and the ``operations``, atomically;
        ``StateError`` if it cannot be written."""
        self._file.save({"models": models, "operations": [op.to_dict() for op in operations]})

    def load(self) -> SavedRollouts | None:
        """What was saved; None when there is no file, or neither it nor its backup is good."""
        data = self._file.load()
        self.warnings = list(self._file.warnings)
        if data is None:
            return None
        operations = []
        for saved in data["operations"]:
            try:
                operations.append(Operation.from_dict(saved))
            except (KeyError, ValueError, TypeError) as error:
                self.warnings.append(f"{STATE_FILE}: an unreadable operation was dropped: {error}")
        return SavedRollouts(data["models"], operations)


def _check(data: Any) -> None:
    """Reject data of the wrong shape (the file then counts as corrupt: set aside)."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ValueError("expected an object with 'models' and 'operations'")
    if not isinstance(data.get("operations"), list):
        raise ValueError("expected a list of operations")
