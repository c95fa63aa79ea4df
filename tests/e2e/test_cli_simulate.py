"""``modelpool simulate`` as a user runs it: the table, the files, the errors."""

from __future__ import annotations

import json
from pathlib import Path

from server_process import modelpool_cli


def test_simulate_prints_the_table_and_writes_the_plot(tmp_path: Path) -> None:
    result = modelpool_cli(
        "simulate", "--workload", "zipf", "--models", "demo", "--budget", "16GB",
        "--requests", "300", "--out", str(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for row in ("hybrid (default)", "cost_aware", "exclusive", "bound (furthest next use)",
                "optimum (exact, in order)"):  # fmt: skip
        assert row in result.stdout
    assert "budget cuda:0 16" in result.stdout
    assert (tmp_path / "zipf.png").read_bytes()[:4] == b"\x89PNG"
    assert "| hybrid (default) |" in (tmp_path / "zipf.md").read_text()
    assert "wrote" in result.stdout


def test_simulate_json_has_every_row(tmp_path: Path) -> None:
    result = modelpool_cli(
        "simulate", "--workload", "phases", "--requests", "200", "--strategy", "lru",
        "--strategy", "cost_aware", "--no-plot", "--no-exact", "--json", "--out", str(tmp_path),
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    labels = [row["label"] for row in data["rows"]]
    assert labels == ["lru", "cost_aware", "exclusive", "bound (furthest next use)"]
    assert data["workload"]["requests"] == 200
    assert not (tmp_path / "phases.png").exists()


def test_simulate_replays_a_csv_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    rows = [f"{i * 7.5},{'llama-3.1-8b' if i % 3 else 'sdxl-base'},2.0" for i in range(40)]
    trace.write_text("time,model,service\n" + "\n".join(rows) + "\n")
    result = modelpool_cli("simulate", "--workload", str(trace), "--no-plot", "--json",
                           "--out", str(tmp_path / "out"), timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workload"]["requests"] == 40
    assert all(row["served"] == 40 for row in data["rows"])


def test_simulate_says_what_input_was_wrong(tmp_path: Path) -> None:
    cases = [
        (["--workload", "nope"], "nope"),
        (["--budget", "lots"], "budget 'lots'"),
        (["--strategy", "nope"], "nope"),
        (["--starvation-limit", "soon"], "--starvation-limit: expected a duration"),
        (["--models", str(tmp_path / "missing.yaml")], "missing.yaml"),
    ]
    for args, words in cases:
        result = modelpool_cli("simulate", *args, "--out", str(tmp_path), timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_bench_prints_each_strategy_against_the_bound() -> None:
    result = modelpool_cli("bench", "--requests", "150", "-w", "zipf", "-w", "bursty",
                           timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wait ÷ the bound's" in result.stdout
    assert "hybrid (default)" in result.stdout
    assert "zipf: best " in result.stdout
    assert "bursty: best " in result.stdout
    refused = modelpool_cli("bench", "-w", "nope", timeout=60)
    assert refused.returncode == 2
    assert "unknown workload 'nope'" in refused.stderr


def test_simulate_cluster_compares_the_routers() -> None:
    result = modelpool_cli(
        "simulate-cluster", "--workload", "zipf", "--nodes", "4", "--model-count", "40",
        "--requests", "400", "--without", "random", "--json", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {row["label"]: row for row in data["rows"]}
    assert set(rows) == {"modelpool", "ray_default", "ray_default_safe"}
    assert all(row["served"] == 400 for row in rows.values())
    assert rows["modelpool"]["cold_loads"] <= rows["ray_default_safe"]["cold_loads"]


def test_simulate_cluster_refuses_an_unknown_workload() -> None:
    result = modelpool_cli("simulate-cluster", "--workload", "bursty", timeout=60)
    assert result.returncode == 2
    assert "unknown workload 'bursty': give zipf or azure" in result.stderr
