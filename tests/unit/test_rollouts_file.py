"""rollouts.json on its own: what is written, what is read back, what is dropped."""

from __future__ import annotations

import json
from pathlib import Path

from modelpool.rollout import Operation, Status, Strategy, make_plan
from modelpool.rollout.rollouts_file import RolloutsFile

MODELS = {"chat": {"versions": {}, "weights": [["v2", 0.4], ["v1", 0.6]]}}


def operation(op_id: str = "op-1") -> Operation:
    settings = {"initial_percentage": 40}
    op = Operation(
        id=op_id,
        model="chat",
        source="v1",
        target="v2",
        strategy=Strategy.CANARY,
        settings=settings,
        plan=make_plan(Strategy.CANARY, settings),
        created=1_790_000_000.0,
    )
    op.move_to(Status.RUNNING)
    op.step, op.share = 0, 0.4
    op.note(1_790_000_001.0, "v2 takes 40% of traffic")
    return op


def test_what_is_saved_is_read_back(tmp_path: Path) -> None:
    file = RolloutsFile(tmp_path)
    file.save(MODELS, [operation("op-1"), operation("op-2")])
    document = json.loads((tmp_path / "rollouts.json").read_text())
    assert (document["format"], document["version"]) == ("rollouts", 1)
    assert document["data"]["models"] == MODELS
    assert document["data"]["operations"][0]["steps"] == list(operation().plan.shares)

    saved = RolloutsFile(tmp_path).load()
    assert saved is not None
    assert saved.models == MODELS
    assert [op.id for op in saved.operations] == ["op-1", "op-2"]
    assert [op.to_dict() for op in saved.operations] == [
        operation("op-1").to_dict(),
        operation("op-2").to_dict(),
    ]


def test_nothing_saved_reads_as_none(tmp_path: Path) -> None:
    file = RolloutsFile(tmp_path)
    assert file.load() is None
    assert file.warnings == []


def test_an_unreadable_operation_is_dropped_with_a_warning(tmp_path: Path) -> None:
    file = RolloutsFile(tmp_path)
    file.save(MODELS, [operation()])
    document = json.loads(file.path.read_text())
    document["data"]["operations"].insert(0, {"operation_id": "op-0", "strategy": "canery"})
    file.path.write_text(json.dumps(document))
    saved = file.load()
    assert saved is not None
    assert [op.id for op in saved.operations] == ["op-1"]
    assert len(file.warnings) == 1
    assert "rollouts.json: an unreadable operation was dropped" in file.warnings[0]


def test_data_of_the_wrong_shape_is_set_aside(tmp_path: Path) -> None:
    file = RolloutsFile(tmp_path)
    file.path.write_text(json.dumps({"format": "rollouts", "version": 1, "data": []}))
    assert file.load() is None
    assert any("expected an object" in warning for warning in file.warnings)
    assert list(tmp_path.glob("rollouts.json.corrupt-*"))
