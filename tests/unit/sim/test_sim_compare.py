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
from modelpool.sim.quality import available_workloads, quality_rows, run_quality, verdicts
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


def test_quality_over_workloads_names_the_best_and_the_worst() -> None:
    demo = ModelSet.named("demo")
    comparisons = run_quality(demo, workloads=["zipf", "phases"], requests=150)
    assert [c.workload.name for c in comparisons] == ["zipf", "phases"]
    rows = quality_rows(comparisons)
    assert [row[0] for row in rows] == [
        *[n + (" (default)" if n == DEFAULT_STRATEGY else "") for n in POLICIES.names()],
        EXCLUSIVE_LABEL, OPTIMUM_LABEL,
    ]  # fmt: skip
    exclusive = rows[len(POLICIES.names())]
    assert all(float(cell.rstrip("×")) > 1 for cell in exclusive[1:])
    lines = verdicts(comparisons)
    assert [line.split(":")[0] for line in lines] == ["zipf", "phases"]
    assert all("best " in line and "worst " in line for line in lines)
    assert verdicts(comparisons, margin=0.0)[0].endswith(", ".join(
        r.label for r in sorted(comparisons[0].strategies, key=lambda r: r.total_wait)
    ))  # fmt: skip


def test_azure_is_skipped_with_the_reason_when_its_trace_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELPOOL_AZURE_TRACE", str(tmp_path / "gone.csv"))
    runnable, notes = available_workloads(["zipf", "azure"])
    assert runnable == ["zipf"]
    assert notes == [f"azure skipped: $MODELPOOL_AZURE_TRACE names {tmp_path / 'gone.csv'}, "
                     "which is not a file"]  # fmt: skip
