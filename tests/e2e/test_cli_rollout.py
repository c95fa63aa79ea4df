"""``modelpool versions | register | rollout | rollback | abort | alerts ...`` as a user
runs them, against a real ``modelpool serve``.

One server (fake models with versions, an API key, a state dir of its own) is started
per module; each test works on models of its own, so their order does not matter.
The ``--set`` parser and the help are checked in-process.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from server_process import Server, free_port, modelpool_cli, on_a_terminal, running_server
from typer.testing import CliRunner

from modelpool import cli
from modelpool.cli.rollout_shared import parse_settings
from modelpool.client import ServerClient

KEY = "k1"
FAKE = {"backend": "fake", "memory": "1GB", "device": "cpu"}
CONFIG: dict[str, Any] = {
    "pool": {"strategy": "lru", "budgets": {"cpu": "40GB"}},
    "health": {"interval": "0.1s"},
    "models": {
        "listed": {
            **FAKE,
            "versions": {
                "v1": {"author": "ana", "notes": "the first cut"},
                "v2": {"load_seconds": 0.05, "memory": "2GB", "author": "bo", "notes": "faster"},
            },
        },
        "registry": {**FAKE},
        "instant": {**FAKE, "versions": {"v2": {"load_seconds": 0.05}}},
        "stepped": {**FAKE, "versions": {"v2": {"load_seconds": 0.05}}},
        "watched": {**FAKE, "versions": {"v2": {"load_seconds": 0.05}}},
        "canaried": {**FAKE, "versions": {"v2": {"load_seconds": 0.05}}},
        "reverted": {**FAKE, "versions": {"v2": {"load_seconds": 0.05}}},
        "halted": {**FAKE, "versions": {"v2": {"load_seconds": 0.05}}},
        "broken": {**FAKE, "versions": {"v2": {"fail_loads": 1000, "fail_message": "bad weights"}}},
        "checked": {**FAKE, "versions": {"v2": {}}},
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    state_dir = tmp_path_factory.mktemp("state")
    config = {**CONFIG, "pool": {**CONFIG["pool"], "state_dir": str(state_dir)}}
    with running_server(config, env={"MODELPOOL_API_KEYS": KEY}, api_key=KEY) as server:
        yield server


def remote(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return modelpool_cli(*args, "--url", server.url, "--api-key", KEY, timeout=60)


def json_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in result.stderr, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def rows(result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    """A table's rows by their first cell (a trailing `` *`` joins the first cell)."""
    found = {}
    for line in result.stdout.splitlines():
        cells = line.split()
        if cells:
            found[cells[0]] = cells[1:]
    return found


def versions_of(server: Server, model: str) -> dict[str, Any]:
    with ServerClient(server.url, KEY) as client:
        return client.versions(model)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines, "nothing on stderr"
    assert lines[0].startswith("error: "), result.stderr
    return lines


def refusal(result: subprocess.CompletedProcess[str], heading: str) -> str:
    """What a refused command listed under ``error: HEADING`` (it exits 2): its
    problems, one a line."""
    assert result.returncode == 2
    lines = error_lines(result)
    assert lines[0] == f"error: {heading}"
    return "\n".join(lines[1:])


# --- versions -----------------------------------------------------------------------


def test_versions_shows_each_version_and_marks_the_serving_one(server: Server) -> None:
    result = remote(server, "versions", "listed")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("listed: serving v1\n")
    table = rows(result)
    assert table["v1"][:5] == ["*", "unloaded", "100%", "config", "ana"]
    assert table["v2"][:4] == ["unloaded", "0%", "config", "bo"]
    assert "the first cut" in result.stdout
    assert "faster" in result.stdout
    assert "* serving" in result.stdout
    assert "rollout " not in result.stdout  # none running
    assert result.stderr == ""


def test_versions_json_is_the_servers_answer(server: Server) -> None:
    answer = json_of(remote(server, "versions", "listed", "--json"))
    assert answer["model"] == "listed"
    assert answer["serving"] == "v1"
    assert answer["weights"] == {"v1": 1.0}
    assert answer["rollout"] is None
    listed = {v["version"]: v for v in answer["versions"]}
    assert set(listed) == {"v1", "v2"}
    assert listed["v2"]["name"] == "listed@v2"
    assert listed["v2"]["author"] == "bo"
    assert listed["v2"]["weight"] == 0.0


# --- register, unregister -----------------------------------------------------------


def test_register_with_settings_then_versions_shows_it_then_unregister(server: Server) -> None:
    result = remote(
        server,
        "register",
        "registry",
        "v3",
        "--set",
        "load_seconds=0.01",
        "--set",
        "defaults={temperature: 1.0}",
        "--memory",
        "512MB",
        "--author",
        "cy",
        "--notes",
        "warmer",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("registered registry@v3 (runtime, by cy): unloaded, 0% of")
    table = rows(remote(server, "versions", "registry"))
    assert table["v3"][:4] == ["unloaded", "0%", "runtime", "cy"]
    assert "warmer" in table["v3"]
    listed = {v["version"]: v for v in versions_of(server, "registry")["versions"]}
    assert listed["v3"]["notes"] == "warmer"

    again = remote(server, "register", "registry", "v3")
    assert "already registered" in refusal(again, "cannot register registry@v3 (1 problem):")

    removed = remote(server, "unregister", "registry", "v3")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == "removed registry@v3"
    assert "v3" not in {v["version"] for v in versions_of(server, "registry")["versions"]}


def test_register_json_gives_the_new_version(server: Server) -> None:
    result = remote(server, "register", "registry", "v4", "--set", "unload_seconds=0.01", "--json")
    assert result.returncode == 0, result.stderr
    view = json_of(result)
    assert view["version"] == "v4"
    assert view["origin"] == "runtime"
    assert view["weight"] == 0.0
    assert remote(server, "unregister", "registry", "v4").returncode == 0


def test_register_with_invalid_settings_lists_every_issue_and_exits_2(server: Server) -> None:
    result = remote(
        server, "register", "registry", "v5", "--set", "load_seconds=-1", "--memory", "lots"
    )
    shown = refusal(result, "cannot register registry@v5 (2 problems):")
    assert "load_seconds" in shown
    assert "memory" in shown
    assert "v5" not in {v["version"] for v in versions_of(server, "registry")["versions"]}


def test_a_malformed_set_exits_2_before_asking_the_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: the server is never asked
    result = modelpool_cli("register", "registry", "v6", "--set", "n_ctx", "--url", url)
    assert result.returncode == 2
    assert error_lines(result) == ["error: --set expects KEY=VALUE, got 'n_ctx'"]


def test_unregistering_a_config_version_is_refused_with_its_reason(server: Server) -> None:
    result = remote(server, "unregister", "listed", "v2")
    assert "config file" in refusal(result, "cannot remove listed@v2 (1 problem):")


# --- rollout ------------------------------------------------------------------------


def test_rollout_immediate_waits_and_exits_0_then_v2_serves(server: Server) -> None:
    result = remote(server, "rollout", "instant", "v2")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("rollout op-")
    assert " completed in " in last
    assert "immediate switch from v1 to v2 asked" in result.stdout  # a history line
    answer = versions_of(server, "instant")
    assert answer["serving"] == "v2"
    assert answer["weights"] == {"v2": 1.0}
    assert rows(remote(server, "versions", "instant"))["v2"][0] == "*"


def test_rollout_canary_follows_each_step_until_completed(server: Server) -> None:
    result = remote(
        server,
        "rollout",
        "stepped",
        "v2",
        "--strategy",
        "canary",
        "--set",
        "initial_percentage=50",
        "--set",
        "step_percentage=50",
        "--set",
        "period=0.2s",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    answer = json_of(result)
    assert answer["ok"] is True
    op = answer["operation"]
    assert op["status"] == "completed"
    assert op["strategy"] == "canary"
    assert op["steps"] == [0.5, 1.0]
    assert {0.5, 1.0} <= {entry["share"] for entry in op["history"]}
    assert versions_of(server, "stepped")["serving"] == "v2"


def test_rollout_shows_a_live_line_on_a_terminal(server: Server) -> None:
    """On a terminal a spinner line shows the status, the share and the progress."""
    args = ["rollout", "watched", "v2", "-s", "canary", "--set", "initial_percentage=50"]
    args += ["--set", "step_percentage=50", "--set", "period=0.6s", "--url", server.url]
    code, shown, errors = on_a_terminal(args, {"MODELPOOL_API_KEY": KEY})
    assert code == 0, errors
    assert ": canary of watched from v1 to v2, running, v2 at " in shown  # the live line
    assert "% done, " in shown
    assert "v2 takes 50% of traffic" in shown  # a history line
    assert " completed in " in shown
    assert versions_of(server, "watched")["serving"] == "v2"


def test_rollout_no_wait_then_status_list_and_abort(server: Server) -> None:
    started = remote(
        server,
        "rollout",
        "canaried",
        "v2",
        "--strategy",
        "canary",
        "--set",
        "initial_percentage=10",
        "--set",
        "step_percentage=30",
        "--set",
        "period=60s",
        "--no-wait",
        "--json",
    )
    assert started.returncode == 0, started.stderr
    op_id = json_of(started)["operation"]["operation_id"]
    deadline = time.monotonic() + 20
    while (op := rollout_of(server, op_id))["status"] != "running":
        assert op["status"] == "pending", op
        assert time.monotonic() < deadline, "the canary never started"
        time.sleep(0.05)  # polling the server, as a user of --no-wait would

    status = remote(server, "rollout-status", op_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{op_id}: canary rollout of canaried from v1 to v2")
    assert "status running, v2 at 10% of traffic" in status.stdout
    assert "steps 10% → 40% → 70% → 100%, each held 60s" in status.stdout
    assert "v2 takes 10% of traffic" in status.stdout  # the history table
    assert "running" in rows(remote(server, "rollouts", "canaried"))[op_id]
    assert "rollout " + op_id in remote(server, "versions", "canaried").stdout

    aborted = remote(server, "abort", op_id)
    assert aborted.returncode == 0, aborted.stderr
    assert aborted.stdout.strip() == f"aborted {op_id}: canaried is back on v1"
    assert rollout_of(server, op_id)["status"] == "aborted"
    assert versions_of(server, "canaried")["weights"] == {"v1": 1.0}

    again = remote(server, "abort", op_id)
    assert "already ended" in refusal(again, f"cannot abort {op_id} (1 problem):")
    listed = json_of(remote(server, "rollouts", "canaried", "--json"))["operations"]
    assert [(o["operation_id"], o["status"]) for o in listed] == [(op_id, "aborted")]


def rollout_of(server: Server, op_id: str) -> dict[str, Any]:
    with ServerClient(server.url, KEY) as client:
        return client.rollout(op_id)


def test_rollback_switches_back_to_the_previous_version(server: Server) -> None:
    first = remote(server, "rollout", "reverted", "v2")
    assert first.returncode == 0, first.stderr
    assert versions_of(server, "reverted")["serving"] == "v2"
    result = remote(server, "rollback", "reverted")
    assert result.returncode == 0, result.stderr
    assert " completed in " in result.stdout
    assert versions_of(server, "reverted")["serving"] == "v1"


def test_rollback_of_a_running_rollout_ends_it(server: Server) -> None:
    with ServerClient(server.url, KEY) as client:
        op = client.start_rollout("halted", "v2", "canary", {"period": "60s"})
    result = remote(server, "rollback", "halted", "--json")
    assert result.returncode == 0, result.stderr
    answer = json_of(result)
    assert answer["operation"]["operation_id"] == op["operation_id"]
    assert answer["operation"]["status"] == "rolled_back"
    assert versions_of(server, "halted")["weights"] == {"v1": 1.0}


def test_rollback_with_nothing_to_roll_back_exits_2(server: Server) -> None:
    result = remote(server, "rollback", "checked")
    assert "nothing to roll back" in refusal(result, "cannot roll back checked (1 problem):")


def test_a_rollout_whose_target_cannot_load_exits_1_with_the_reason(server: Server) -> None:
    result = remote(server, "rollout", "broken", "v2")
    assert result.returncode == 1
    lines = error_lines(result)
    assert lines[-1].startswith("error: rollout op-")
    assert " failed: " in lines[-1]
    assert "bad weights" in lines[-1]
    assert versions_of(server, "broken")["serving"] == "v1"


def test_a_refused_rollout_lists_every_problem_and_exits_2(server: Server) -> None:
    result = remote(server, "rollout", "checked", "v1", "--set", "speed=11")
    shown = refusal(result, "cannot roll out checked v1 (immediate) (2 problems):")
    assert "speed" in shown
    assert "already serves" in shown
    assert result.stdout == ""


def test_check_lists_every_problem_and_exits_2(server: Server) -> None:
    result = remote(
        server,
        "rollout",
        "checked",
        "v9",
        "--strategy",
        "canary",
        "--set",
        "initial_percentag=10",
        "--set",
        "period=soon",
        "--check",
    )
    shown = refusal(result, "cannot roll out checked v9 (canary) (3 problems):")
    assert "did you mean 'initial_percentage'" in shown
    assert "period" in shown
    assert "no version 'v9'" in shown
    assert not json_of(remote(server, "rollouts", "checked", "--json"))["operations"]


def test_check_of_a_valid_rollout_exits_0_and_starts_nothing(server: Server) -> None:
    result = remote(
        server, "rollout", "checked", "v2", "-s", "gradual", "--set", "steps=2", "--check"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: the server would start this rollout"
    answer = json_of(remote(server, "rollout", "checked", "v2", "--check", "--json"))
    assert answer == {"valid": True, "errors": []}
    assert versions_of(server, "checked")["rollout"] is None


# --- alerts, errors -----------------------------------------------------------------


def test_alerts_with_none_active(server: Server) -> None:
    result = remote(server, "alerts")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no active alerts"
    assert json_of(remote(server, "alerts", "--json")) == {"alerts": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("versions", "nope"), "unknown model 'nope'"),
        (("unregister", "listed", "v9"), "model 'listed' has no version 'v9'"),
        (("rollout-status", "op-nope"), "no rollout operation 'op-nope'"),
        (("abort", "op-nope"), "no rollout operation 'op-nope'"),
        (("rollback", "nope"), "unknown model 'nope'"),
    ],
)
def test_an_unknown_model_version_or_operation_exits_4(
    server: Server, args: tuple[str, ...], message: str
) -> None:
    result = remote(server, *args)
    assert result.returncode == 4
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert result.stdout == ""


def test_an_unknown_model_in_json_reports_the_error(server: Server) -> None:
    result = remote(server, "versions", "nope", "--json")
    assert result.returncode == 4
    error = json_of(result)["error"]
    assert error["status"] == 404
    assert error["code"] == "model_not_found"
    assert error["exit_code"] == 4


def test_a_missing_key_exits_5(server: Server) -> None:
    result = modelpool_cli("alerts", "--url", server.url)
    assert result.returncode == 5
    assert error_lines(result)[0].startswith("error: authentication failed: ")


def test_an_unreachable_server_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = modelpool_cli("versions", "listed", "--url", url)
    assert result.returncode == 3
    assert f"cannot connect to {url}" in error_lines(result)[0]


# --- in-process: --set and the help -------------------------------------------------


def test_set_values_are_read_as_yaml() -> None:
    settings = parse_settings(
        [
            "n_ctx=4096",
            "share=0.5",
            "period=20s",
            "name=hello world",
            "flag=true",
            "defaults={temperature: 1.0, stop: [a, b]}",
            "tags=[x, y]",
            "empty=",
            "quoted='42'",
            "created=2024-06-01",
            "url=http://h:1/a=b",
        ]
    )
    assert settings == {
        "n_ctx": 4096,
        "share": 0.5,
        "period": "20s",
        "name": "hello world",
        "flag": True,
        "defaults": {"temperature": 1.0, "stop": ["a", "b"]},
        "tags": ["x", "y"],
        "empty": None,
        "quoted": "42",
        "created": "2024-06-01",  # a date stays text: JSON has no dates
        "url": "http://h:1/a=b",  # only the first '=' splits
    }
    assert parse_settings(["a=1", " a =2"]) == {"a": 2}  # the last one wins


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("n_ctx", "--set expects KEY=VALUE, got 'n_ctx'"),
        ("=5", "--set expects KEY=VALUE, got '=5'"),
        ("defaults={a: 1", "--set defaults: '{a: 1' is not a YAML value"),
    ],
)
def test_set_rejects_what_is_not_key_value(pair: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("{", r"\{").replace("(", r"\(")):
        parse_settings([pair])


@pytest.mark.parametrize(
    "command",
    ["versions", "register", "unregister", "rollout", "rollout-status", "rollouts", "rollback",
     "abort", "alerts"],
)  # fmt: skip
def test_help_lists_the_exit_codes(command: str) -> None:
    result = CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "4 unknown model, version or operation (404)" in text
    assert "2 invalid input or refused" in text
