"""StateFile: atomic saves with a .bak, and loads that set bad files aside."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from modelpool.config import ModelSpec
from modelpool.core.estimates import EstimateStore
from modelpool.core.statefile import StateFile
from modelpool.errors import ModelPoolError, StateError

STAMP = "19700102T000000Z"  # what the injected clock below gives


def state(path: Path, version: int = 2) -> StateFile:
    return StateFile(path, "registry", version, clock=lambda: 86400.0)


def leftovers(folder: Path) -> list[str]:
    """Files a save should never leave behind: its temporary and staging files."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


def test_round_trip_writes_the_envelope(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "registry.json"  # the folders are created
    state(path).save({"a": [1, 2], "b": None})
    assert state(path).load() == {"a": [1, 2], "b": None}
    assert json.loads(path.read_text()) == {
        "format": "registry",
        "version": 2,
        "data": {"a": [1, 2], "b": None},
    }
    assert leftovers(path.parent) == []


def test_no_file_loads_none_without_warnings(tmp_path: Path) -> None:
    file = state(tmp_path / "registry.json")
    assert file.load() is None
    assert file.warnings == []


def test_a_save_keeps_the_previous_file_as_bak(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    state(path).save({"n": 1})
    assert not (tmp_path / "registry.json.bak").exists()  # nothing before the first
    state(path).save({"n": 2})
    state(path).save({"n": 3})
    assert state(path).load() == {"n": 3}
    assert json.loads((tmp_path / "registry.json.bak").read_text())["data"] == {"n": 2}
    assert leftovers(tmp_path) == []


def test_a_truncated_file_is_set_aside_and_the_bak_used(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    state(path).save({"n": 1})
    state(path).save({"n": 2})
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    file = state(path)
    assert file.load() == {"n": 1}
    aside = tmp_path / f"registry.json.corrupt-{STAMP}"
    assert aside.read_bytes() == whole[: len(whole) // 2]  # kept, not deleted
    assert not path.exists()
    assert len(file.warnings) == 1
    assert str(path) in file.warnings[0]
    assert "not JSON" in file.warnings[0]
    assert str(aside) in file.warnings[0]


def test_a_zero_filled_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    state(path).save({"n": 1})
    state(path).save({"n": 2})
    path.write_bytes(b"\0" * 4096)  # what a crash can leave on some file systems
    file = state(path)
    assert file.load() == {"n": 1}
    assert (tmp_path / f"registry.json.corrupt-{STAMP}").read_bytes() == b"\0" * 4096
    assert "zero-filled" in file.warnings[0]


def test_a_save_after_falling_back_does_not_back_up_the_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    state(path).save({"n": 1})
    state(path).save({"n": 2})
    path.write_text("{")
    file = state(path)
    assert file.load() == {"n": 1}
    file.save({"n": 3})
    assert state(path).load() == {"n": 3}
    assert json.loads((tmp_path / "registry.json.bak").read_text())["data"] == {"n": 1}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([1, 2, 3], "not a JSON object"),
        ({"format": "estimates", "version": 1, "data": {}}, "format is 'estimates'"),
        ({"models": {}}, "format is None"),
        ({"format": "registry", "version": "2", "data": {}}, "not a positive integer"),
        ({"format": "registry", "version": 2}, "no 'data'"),
        ({"format": "registry", "version": 3, "data": {}}, "newer"),
    ],
    ids=["not-an-object", "other-format", "no-envelope", "bad-version", "no-data", "newer"],
)
def test_wrong_schema_format_or_a_newer_version_is_set_aside(
    tmp_path: Path, document: Any, reason: str
) -> None:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(document))
    file = state(path)
    assert file.load() is None  # no .bak to fall back on
    assert json.loads((tmp_path / f"registry.json.corrupt-{STAMP}").read_text()) == document
    assert reason in file.warnings[0]


def test_an_older_version_is_read(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    state(path, version=1).save({"n": 1})
    assert state(path, version=2).load() == {"n": 1}


def test_check_rejects_data_of_the_wrong_shape(tmp_path: Path) -> None:
    def must_be_a_dict(data: Any) -> None:
        if not isinstance(data, dict):
            raise ValueError("want a dict")

    path = tmp_path / "registry.json"
    state(path).save({"n": 1})
    state(path).save([1])
    file = StateFile(path, "registry", 2, clock=lambda: 86400.0, check=must_be_a_dict)
    assert file.load() == {"n": 1}
    assert "want a dict" in file.warnings[0]


def test_both_bad_loads_none_and_sets_both_aside(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    state(path).save({"n": 1})
    state(path).save({"n": 2})
    path.write_text("")
    (tmp_path / "registry.json.bak").write_text('{"format": "registry"')
    file = state(path)
    assert file.load() is None
    assert (tmp_path / f"registry.json.corrupt-{STAMP}").read_text() == ""
    assert (tmp_path / f"registry.json.bak.corrupt-{STAMP}").exists()
    assert not path.exists()
    assert not (tmp_path / "registry.json.bak").exists()
    assert len(file.warnings) == 2
    assert "empty file" in file.warnings[0]


def test_setting_aside_twice_in_one_second_overwrites_nothing(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    for text in ("first", "second"):
        path.write_text(text)
        assert state(path).load() is None
    assert (tmp_path / f"registry.json.corrupt-{STAMP}").read_text() == "first"
    assert (tmp_path / f"registry.json.corrupt-{STAMP}-1").read_text() == "second"


def assert_refused_and_nothing_left(path: Path, tmp_path: Path) -> None:
    with pytest.raises(StateError) as caught:
        state(path).save({"n": 1})
    assert isinstance(caught.value, ModelPoolError)
    assert str(path) in str(caught.value)
    assert caught.value.reason
    assert caught.value.reason in str(caught.value)
    assert not path.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a folder whatever its mode")
def test_an_unwritable_folder_raises_state_error_and_leaves_nothing(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_refused_and_nothing_left(locked / "registry.json", tmp_path)
        assert leftovers(locked) == []
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_a_folder_that_cannot_be_made_raises_state_error_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Runs as root too: a file where a folder should be stops root as well."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert_refused_and_nothing_left(blocker / "state" / "registry.json", tmp_path)
    assert blocker.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_a_save_interrupted_before_the_rename_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "registry.json"
    state(path).save({"n": 1})
    real_replace = os.replace

    def crash_onto_the_file(source: Any, target: Any) -> None:
        if Path(target) == path:
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_onto_the_file)
    with pytest.raises(StateError, match="No space left on device"):
        state(path).save({"n": 2})
    monkeypatch.undo()
    assert state(path).load() == {"n": 1}
    assert leftovers(tmp_path) == []


# -- EstimateStore on top of it -----------------------------------------------------------


def spec(model_id: str = "a") -> ModelSpec:
    return ModelSpec(id=model_id, backend="fake", device="cpu")


def test_estimates_still_read_the_format_before_statefile(tmp_path: Path) -> None:
    from modelpool.core.estimates import fingerprint

    path = tmp_path / "estimates.json"
    entry = {"bytes": 123, "fingerprint": fingerprint(spec()), "at": 0.0}
    path.write_text(json.dumps({"format": 1, "models": {"a": entry}}))
    store = EstimateStore(path)
    assert store.get(spec()) == 123
    store.record(spec("b"), 456)  # rewritten in the new form, the old one kept as .bak
    assert json.loads(path.read_text())["format"] == "estimates"
    assert EstimateStore(path).get(spec()) == 123
    assert json.loads((tmp_path / "estimates.json.bak").read_text())["format"] == 1


def test_estimates_fall_back_to_the_bak_and_log_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "estimates.json"
    store = EstimateStore(path)
    store.record(spec(), 100)
    store.record(spec(), 200)
    path.write_bytes(b"\0" * 64)
    with caplog.at_level(logging.WARNING, logger="modelpool.estimates"):
        assert EstimateStore(path).get(spec()) == 100
    assert "zero-filled" in caplog.text
    assert str(path) in caplog.text


def test_estimates_that_cannot_be_saved_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    store = EstimateStore(blocker / "estimates.json")
    with caplog.at_level(logging.WARNING, logger="modelpool.estimates"):
        store.record(spec(), 100)
    assert store.get(spec()) == 100  # still used for this run
    assert "not remembered" in caplog.text
    assert str(blocker) in caplog.text
