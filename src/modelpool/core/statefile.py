"""One JSON state file, written atomically and read back safely.

On disk a state file is one JSON object, an envelope around the caller's data::

    {"format": "estimates", "version": 1, "data": {...}}

``save`` never writes over the file in place. It writes a temporary file in the same
folder, flushes and fsyncs it, hard-links the current (good) file to ``<path>.bak``,
renames the temporary file onto ``<path>`` and fsyncs the folder. A crash at any point
therefore leaves ``<path>`` either the old document or the new one, whole, and the
one before it in ``<path>.bak``.

``load`` trusts nothing it reads. A file that is empty, truncated, zero-filled, not
JSON, not an envelope, of another format or of a newer version is set aside as
``<path>.corrupt-<UTC timestamp>`` (never deleted: someone may want to look at it), a
line saying so is added to ``warnings``, and ``<path>.bak`` is tried the same way.
This module does not log: the caller decides where ``warnings`` go.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelpool.errors import StateError

__all__ = ["StateFile"]


class _Unusable(ValueError):
    """A state file that must not be used; the message says why."""


class StateFile:
    """The JSON document at ``path`` holding data of ``kind``, written as ``version``.

    ``legacy(document)`` may turn an object written before the envelope existed into
    data (return None if it is not one); ``check(data)`` may raise ValueError to
    reject data whose shape is wrong, which then counts as a corrupt file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        kind: str,
        version: int,
        *,
        clock: Callable[[], float] = time.time,
        legacy: Callable[[dict[str, Any]], Any | None] | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.backup = self.path.with_name(self.path.name + ".bak")
        self.kind, self.version = kind, version
        self.warnings: list[str] = []
        self._clock, self._legacy, self._check = clock, legacy, check

    # -- reading ----------------------------------------------------------------------

    def load(self) -> Any | None:
        """The saved data; None if there is no file, or neither it nor its backup is good.

        A missing ``path`` means "nothing saved" (the backup is not consulted, so
        deleting the file is a way to start afresh).
        """
        if not self.path.exists():
            return None
        for candidate in (self.path, self.backup):
            try:
                return self._parse(candidate.read_bytes())
            except FileNotFoundError:
                continue
            except OSError as error:  # unreadable, not corrupt: leave it where it is
                self.warnings.append(f"cannot read {candidate}: {error.strerror or error}")
            except (_Unusable, ValueError, RecursionError) as error:
                self._set_aside(candidate, str(error) or type(error).__name__)
        return None

    def _parse(self, raw: bytes) -> Any:
        if not raw.strip():
            raise _Unusable("empty file")
        if not raw.strip(b"\0"):
            raise _Unusable("zero-filled file")
        try:
            document = json.loads(raw)
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            raise _Unusable(f"not JSON ({error})") from None
        if not isinstance(document, dict):
            raise _Unusable(f"not a JSON object but {type(document).__name__}")
        if document.get("format") != self.kind and self._legacy is not None:
            data = self._legacy(document)
            if data is not None:
                return self._checked(data)
        if document.get("format") != self.kind:
            raise _Unusable(f"format is {document.get('format')!r}, expected {self.kind!r}")
        version = document.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _Unusable(f"version {version!r} is not a positive integer")
        if version > self.version:
            raise _Unusable(f"version {version} is newer than this modelpool's {self.version}")
        if "data" not in document:
            raise _Unusable("no 'data' key")
        return self._checked(document["data"])

    def _checked(self, data: Any) -> Any:
        if self._check is not None:
            try:
                self._check(data)
            except (ValueError, TypeError) as error:
                raise _Unusable(f"unexpected contents ({error})") from None
        return data

    def _set_aside(self, candidate: Path, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        aside = candidate.with_name(f"{candidate.name}.corrupt-{stamp}")
        count = 0
        while aside.exists():  # two in one second: never overwrite an earlier one
            count += 1
            aside = candidate.with_name(f"{candidate.name}.corrupt-{stamp}-{count}")
        try:
            candidate.rename(aside)
        except OSError as error:
            self.warnings.append(
                f"ignoring {candidate} ({reason}); could not move it aside: "
                f"{error.strerror or error}"
            )
        else:
            self.warnings.append(f"ignoring {candidate} ({reason}); moved it to {aside}")

    # -- writing ----------------------------------------------------------------------

    def save(self, data: Any) -> None:
        """Replace the file with ``data`` atomically, keeping the previous good one as .bak.

        Raises StateError (naming the path and the OS's reason) if it cannot be
        written; then the previous file is untouched and no temporary file is left.
        """
        envelope = {"format": self.kind, "version": self.version, "data": data}
        text = json.dumps(envelope, indent=1, sort_keys=True)  # TypeError before any I/O
        folder = self.path.parent
        temporary: str | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            self._keep_backup()
            os.replace(temporary, self.path)
            temporary = None
        except OSError as error:
            raise StateError(self.path, error.strerror or str(error)) from error
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        _fsync_folder(folder)

    def _keep_backup(self) -> None:
        """Make ``.bak`` the current file, if that is good; never a half-made ``.bak``."""
        try:
            self._parse(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return  # missing or bad: the .bak there (if any) is the better copy
        staging = self.backup.with_name(self.backup.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        try:
            os.link(self.path, staging)
        except OSError:  # a file system without hard links: copy instead
            shutil.copyfile(self.path, staging)
            with open(staging, "rb") as copied:
                os.fsync(copied.fileno())
        try:
            os.replace(staging, self.backup)
        except BaseException:
            with contextlib.suppress(OSError):
                staging.unlink()
            raise


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; some systems cannot fsync a folder, which is fine."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
