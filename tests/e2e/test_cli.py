"""The ``modelpool`` command as a user runs it: a real process, real files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_process import modelpool_cli

import modelpool

GOOD = """\
pool:
  strategy: lru
  budgets: {cpu: 10GB}
models:
  test-a: {backend: fake, memory: 4GB, device: cpu}
  test-b: {backend: fake, memory: 3GB, device: cpu, tags: [code]}
  test-c: {backend: fake, memory: 1GB, device: cpu, pinned: true}
"""

BAD = """\
pool:
  strategy: lru
  budgets: {cpu: 10GB}
models:
  test-a:
    backend: fake
    memory: lots
    device: cpu
"""


def test_check_config_accepts_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "modelpool.yaml"
    path.write_text(GOOD)
    result = modelpool_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 3 models, strategy lru")
    assert "cpu=" in result.stdout


def test_check_config_reports_file_line_and_key_path(tmp_path: Path) -> None:
    path = tmp_path / "modelpool.yaml"
    path.write_text(BAD)
    result = modelpool_cli("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}:7: models.test-a.memory: " in result.stderr
    assert "lots" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_config_json_lists_the_issues(tmp_path: Path) -> None:
    path = tmp_path / "modelpool.yaml"
    path.write_text(BAD)
    result = modelpool_cli("check-config", "--json", str(path))
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [(i["line"], i["path"]) for i in report["issues"]] == [(7, "models.test-a.memory")]


def test_check_config_on_a_missing_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = modelpool_cli("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}: no such file"


def test_check_config_gives_the_line_of_a_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "modelpool.yaml"
    path.write_text("pool:\n  strategy: lru\nmodels: [unclosed\n")
    result = modelpool_cli("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:4: invalid YAML"), result.stderr


NEVER_LOADS = """\
pool:
  budgets: {{cpu: 2GB}}
models:
  huge:
    backend: fake
    memory: 3GB
    device: cpu
  lost:
    backend: llamacpp
    model_path: {missing}
    device: cpu
  typo:
    backend: process
    command: [server, --port, "${{PROT}}"]
"""


def test_check_config_refuses_what_could_never_load(tmp_path: Path) -> None:
    path = tmp_path / "modelpool.yaml"
    missing = tmp_path / "absent.gguf"
    path.write_text(NEVER_LOADS.format(missing=missing))
    result = modelpool_cli("check-config", "--json", str(path))
    assert result.returncode == 2, result.stdout
    found = {i["path"]: (i["line"], i["message"]) for i in json.loads(result.stdout)["issues"]}
    assert set(found) == {"models.huge.memory", "models.lost.model_path", "models.typo"}
    assert found["models.huge.memory"][0] == 6
    assert "more than the whole cpu budget" in found["models.huge.memory"][1]
    never = f"no file at {str(missing)!r}: the model could never load"
    assert found["models.lost.model_path"] == (10, never)
    assert found["models.typo"][0] == 12
    assert "unknown placeholder ${PROT} in command[2]" in found["models.typo"][1]


def test_demo_json_runs_a_workload_and_accounts_every_request() -> None:
    result = modelpool_cli("demo", "--seconds", "2", "--seed", "1", "--json", timeout=20)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    run, models = status["demo"], status["model_resources"]
    assert run["requests"] > 0
    assert run["failed"] == 0, run["errors"]
    assert sum(m["load_count"] for m in models.values()) >= 1
    assert sum(m["hits"] + m["misses"] for m in models.values()) == run["requests"]
    assert models["embedder"]["pinned"] is True
    assert models["embedder"]["status"] == "ready"  # pinned: loaded at start, never evicted


def test_demo_rejects_an_unknown_strategy() -> None:
    result = modelpool_cli("demo", "--strategy", "lur", "--json")
    assert result.returncode == 2
    assert "did you mean 'lru'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [("--version",), ("version",)])
def test_version(args: tuple[str, ...]) -> None:
    result = modelpool_cli(*args)
    assert result.returncode == 0
    assert result.stdout.strip() == f"modelpool {modelpool.__version__}"
