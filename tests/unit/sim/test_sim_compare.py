"""A comparison's rows, ratios, tables and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelpool.plugins import POLICIES
from modelpool.sim.bound import BOUND_LABEL
from modelpool.sim.compare import DEFAULT_STRATEGY, EXCLUSIVE_LABEL, compare
from modelpool.sim.files import write_results
from modelpool.sim.models import ModelSet, SimModel
from modelpool.sim.optimum import OPTIMUM_LABEL
from modelpool.sim.report import HEADERS, markdown
from modelpool.sim.workload import Request, Workload

GB = 1000**3
MODELS = ModelSet(
    "three",
    tuple(SimModel(m, GB, load_seconds=3.0, unload_seconds=0.0) for m in ("a", "b", "c")),
    {"cuda:0": 2 * GB},
)
# a and b alternate, c comes once: whoever keeps a and b resident wins.
WORKLOAD = Workload(
    "alternating",
    tuple(Request(10.0 * i, "c" if i == 5 else "ab"[i % 2], service=1.0) for i in range(12)),
)


@pytest.fixture(scope="module")
def comparison():  # type: ignore[no-untyped-def]
    return compare(WORKLOAD, MODELS)


def test_every_strategy_and_the_baselines_have_a_row(comparison) -> None:  # type: ignore[no-untyped-def]
    labels = [row.label for row in comparison.rows]
    assert labels == [*POLICIES.names(), EXCLUSIVE_LABEL, BOUND_LABEL, OPTIMUM_LABEL]
    assert comparison.optimum_note is None
    assert comparison.default == DEFAULT_STRATEGY == "hybrid"


def test_exclusive_loses_to_packing_and_the_bound_is_least(comparison) -> None:  # type: ignore[no-untyped-def]
    exclusive, bound = comparison.exclusive, comparison.bound
    assert exclusive.cold_loads == 12  # every request swaps
    assert bound.cold_loads == 4  # a, b, c, then a or b once more
    assert comparison.ratio(EXCLUSIVE_LABEL, BOUND_LABEL) == pytest.approx(3.0)
    for row in comparison.strategies:
        assert bound.total_wait <= row.total_wait <= exclusive.total_wait, row.label


def test_the_markdown_table_has_a_line_per_row(comparison) -> None:  # type: ignore[no-untyped-def]
    text = markdown(comparison)
    assert "| " + " | ".join(HEADERS) + " |" in text
    assert "| hybrid (default) |" in text
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 1 + len(
        comparison.rows
    )
    assert "12 requests" in text


def test_results_are_written_whole(comparison, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    written = write_results(comparison, tmp_path / "out")
    assert sorted(p.name for p in written) == [
        "alternating.json", "alternating.md", "alternating.png",
    ]  # fmt: skip
    assert (tmp_path / "out" / "alternating.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "out" / "alternating.json").read_text())
    assert [row["label"] for row in data["rows"]][-3:] == [
        EXCLUSIVE_LABEL, BOUND_LABEL, OPTIMUM_LABEL,
    ]  # fmt: skip
    assert not list((tmp_path / "out").glob(".*partial"))


def test_a_chosen_strategy_list_and_no_exact_search() -> None:
    result = compare(WORKLOAD, MODELS, strategies=["lru"], exact=False)
    assert [row.label for row in result.rows] == ["lru", EXCLUSIVE_LABEL, BOUND_LABEL]
    assert result.optimum_note == "not asked for"
