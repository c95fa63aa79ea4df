"""``AuditLog`` on real files with a manual clock: the entry, rotation, damaged lines,
and a write that fails being counted and logged, never raised."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from modelpool.core.testing import ManualClock
from modelpool.http.audit import AuditLog, Caller, fingerprint

ALICE = Caller.of("10.0.0.7", "sk-alice-secret")
NOBODY = Caller.of(None, None)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_an_entry_is_one_json_line_with_the_time_caller_request_and_outcome(
    tmp_path: Path,
) -> None:
    clock = ManualClock(start=1_765_000_000.125)
    audit = AuditLog(tmp_path / "state" / "audit.log", clock=clock)
    audit.record("load", ALICE, {"model": "smollm2"}, 200)
    clock.advance(2)
    audit.record("unload", NOBODY, {"model": "nope"}, 404, "The model 'nope' does not exist")

    written = [json.loads(line) for line in lines(audit.path)]
    assert written == [
        {
            "time": "2025-12-06T05:46:40.125Z",
            "operation": "load",
            "caller": {"address": "10.0.0.7", "key": fingerprint("sk-alice-secret")},
            "request": {"model": "smollm2"},
            "outcome": "ok",
            "status": 200,
        },
        {
            "time": "2025-12-06T05:46:42.125Z",
            "operation": "unload",
            "caller": {"address": "unknown", "key": "none"},
            "request": {"model": "nope"},
            "outcome": "error",
            "status": 404,
            "error": "The model 'nope' does not exist",
        },
    ]
    assert "sk-alice-secret" not in audit.path.read_text()
    assert [entry["operation"] for entry in audit.recent(10)] == ["unload", "load"]
    assert audit.failures == 0


def test_the_fingerprint_is_twelve_hex_digits_of_the_keys_sha256() -> None:
    expected = hashlib.sha256(b"sk-alice-secret").hexdigest()[:12]
    assert fingerprint("sk-alice-secret") == fingerprint(b"sk-alice-secret") == expected
    assert fingerprint("sk-bob") != expected
    assert fingerprint(None) == fingerprint(b"") == "none"


def test_past_max_bytes_the_log_rotates_and_keeps_only_keep_old_files(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", max_bytes=400, keep=2, clock=ManualClock())
    for n in range(30):
        audit.record("pin", ALICE, {"model": f"m{n}"}, 200)

    assert [path.name for path in audit.files()] == ["audit.log", "audit.log.1", "audit.log.2"]
    assert not (tmp_path / "audit.log.3").exists()
    for path in audit.files():
        assert 0 < path.stat().st_size <= 400
        assert all(json.loads(line)["operation"] == "pin" for line in lines(path))
    newest = [entry["request"]["model"] for entry in audit.recent(1000)]
    # Newest first and without a gap, across the files; the oldest went with the third.
    assert newest == [f"m{n}" for n in range(29, 29 - len(newest), -1)]
    assert 6 <= len(newest) < 30


def test_keep_zero_starts_the_file_afresh(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", max_bytes=300, keep=0, clock=ManualClock())
    for n in range(10):
        audit.record("pin", ALICE, {"model": f"m{n}"}, 200)
    assert [path.name for path in audit.files()] == ["audit.log"]
    assert audit.recent(1)[0]["request"] == {"model": "m9"}


def test_a_damaged_line_is_skipped_and_the_next_entry_starts_on_a_line_of_its_own(
    tmp_path: Path,
) -> None:
    audit = AuditLog(tmp_path / "audit.log", clock=ManualClock())
    audit.record("load", ALICE, {"model": "a"}, 200)
    with audit.path.open("ab") as file:  # what a crash in the middle of a write leaves
        file.write(b'{"time": "2026-01-01T00:00:00Z", "operation": "unl')
    audit.record("load", ALICE, {"model": "b"}, 200)
    with audit.path.open("ab") as file:
        file.write(b"not json at all\n[1, 2]\n")
    audit.record("load", ALICE, {"model": "c"}, 200)

    assert [entry["request"]["model"] for entry in audit.recent(10)] == ["c", "b", "a"]
    assert len(lines(audit.path)) == 6  # the cut line stayed alone on its line


def test_a_write_that_fails_is_counted_and_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log's folder should be")
    failed: list[int] = []
    audit = AuditLog(
        blocker / "audit.log", clock=ManualClock(), on_failure=lambda: failed.append(1)
    )
    with caplog.at_level(logging.WARNING, logger="modelpool.audit"):
        audit.record("load", ALICE, {"model": "a"}, 200)
        audit.record("unload", ALICE, {"model": "a"}, 200)
    assert audit.failures == 2
    assert len(failed) == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "cannot write the audit log" in errors[0].getMessage()
    assert audit.recent(10) == []

    blocker.unlink()  # writable again: said once, and entries are written
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modelpool.audit"):
        audit.record("pin", ALICE, {"model": "a"}, 200)
    assert [entry["operation"] for entry in audit.recent(10)] == ["pin"]
    assert audit.failures == 2
    assert ["written again" in r.getMessage() for r in caplog.records] == [True]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_an_unwritable_folder_is_a_counted_failure(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        audit = AuditLog(folder / "audit.log", clock=ManualClock())
        audit.record("load", ALICE, {"model": "a"}, 200)
        assert audit.failures == 1
    finally:
        folder.chmod(0o700)


def test_a_long_error_message_is_bounded(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", clock=ManualClock())
    audit.record("load", ALICE, {"model": "a"}, 503, "x" * 50_000)
    (entry,) = audit.recent(1)
    assert len(entry["error"]) < 1100
    assert entry["error"].endswith("(49000 more characters)")


def test_nonsense_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        AuditLog(tmp_path / "audit.log", max_bytes=0)
