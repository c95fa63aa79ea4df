"""``modelpool status | models | load | unload`` as a user runs them, against a real server.

Each test runs ``python -m modelpool`` as a subprocess against ``modelpool serve`` (fake
models, an API key, started once per module: starting one takes seconds); the tests
use different models, so their order does not matter.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_process import Server, free_port, modelpool_cli, on_a_terminal, running_server
from typer.testing import CliRunner

from modelpool import cli
from modelpool.client import DEFAULT_URL, ApiError, ServerClient

GB = 1000**3
CONFIG: dict[str, Any] = {
    "pool": {"strategy": "lru", "budgets": {"cpu": "10GB"}},
    "models": {  # 9 GB in all: loading any of them evicts nothing
        "resident": {"backend": "fake", "memory": "1GB", "device": "cpu", "pinned": True},
        "loadable": {"backend": "fake", "memory": "4GB", "device": "cpu", "load_seconds": 0.2},
        "broken": {
            "backend": "fake",
            "memory": "1GB",
            "device": "cpu",
            "fail_loads": 1000,
            "fail_message": "weights are corrupt",
        },
        "unloadable": {"backend": "fake", "memory": "2GB", "device": "cpu"},
        "background": {"backend": "fake", "memory": "0.5GB", "device": "cpu", "load_seconds": 0.5},
        "watched": {"backend": "fake", "memory": "0.25GB", "device": "cpu", "load_seconds": 0.8},
        "streamed": {"backend": "fake", "memory": "0.25GB", "device": "cpu"},
    },
}
KEY = "k1"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(CONFIG, env={"MODELPOOL_API_KEYS": KEY}, api_key=KEY) as server:
        yield server


def remote(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return modelpool_cli(*args, "--url", server.url, "--api-key", KEY)


def json_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in result.stderr, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def states(server: Server) -> dict[str, str]:
    with ServerClient(server.url, KEY) as client:
        return {view["id"]: view["status"] for view in client.models()}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, which must be one ``error: ...`` line."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- status and models ----------------------------------------------------------------


def test_status_shows_budget_strategy_and_loaded_models(server: Server) -> None:
    result = remote(server, "status")
    assert result.returncode == 0, result.stderr
    assert f"{server.url}: strategy lru, queue 0 waiting (max " in result.stdout
    cpu_row = next(
        line.split() for line in result.stdout.splitlines() if line.strip().startswith("cpu ")
    )
    assert cpu_row[:3] == ["cpu", "10.0", "GB"]  # the budget, in the config's own unit
    assert any(
        line.split()[:3] == ["resident", "*", "ready"] for line in result.stdout.splitlines()
    )
    assert result.stderr == ""


def test_status_json_is_the_servers_answer(server: Server) -> None:
    status = json_of(remote(server, "status", "--json"))
    assert status["strategy"] == "lru"
    cpu = status["memory_info"]["cpu"]
    assert cpu["budget"] == 10 * GB
    assert cpu["committed"] + cpu["reserved"] + cpu["leaving"] + cpu["free"] == 10 * GB
    assert "resident" in status["loaded_models"]
    assert status["model_resources"]["broken"]["memory_bytes"] == GB
    assert status["queue"]["waiting"] == 0


def test_models_lists_every_model_with_its_state(server: Server) -> None:
    result = remote(server, "models")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    rows = {cells[0]: cells[1:] for cells in lines if cells[0] in CONFIG["models"]}
    assert set(rows) == set(CONFIG["models"])
    shown = {model: cells[1] if cells[0] == "*" else cells[0] for model, cells in rows.items()}
    assert shown == states(server)  # each row shows its model's own state, as the server has it
    assert rows["resident"][:4] == ["*", "ready", "cpu", "1.0"]
    assert [model for model, cells in rows.items() if cells[0] == "*"] == ["resident"]
    assert lines[-1] == ["*", "pinned"]


def test_models_json_gives_every_view(server: Server) -> None:
    views = {view["id"]: view for view in json_of(remote(server, "models", "--json"))["models"]}
    assert set(views) == set(CONFIG["models"])
    assert views["resident"]["status"] == "ready"
    assert views["resident"]["pinned"] is True
    assert views["loadable"]["memory_bytes"] == 4 * GB
    assert views["broken"]["backend"] == "fake"


# --- load ---------------------------------------------------------------------------


def test_load_waits_until_ready_and_models_then_shows_it(server: Server) -> None:
    result = remote(server, "load", "loadable")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("loadable loaded in "), line
    seconds = float(line.removeprefix("loadable loaded in ").split("s")[0])
    assert seconds >= 0.2  # the fake's load_seconds: it did wait for the load
    assert line.endswith(": ready on cpu (4.0 GB)")
    views = {v["id"]: v for v in json_of(remote(server, "models", "--json"))["models"]}
    assert views["loadable"]["status"] == "ready"
    assert views["loadable"]["load_count"] == 1

    again = remote(server, "load", "loadable")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "loadable was already ready on cpu (4.0 GB)"


def test_load_json_says_what_was_loaded(server: Server) -> None:
    result = remote(server, "load", "resident", "--json")
    assert result.returncode == 0, result.stderr
    answer = json_of(result)
    assert answer["ok"] is True
    assert answer["already_loaded"] is True  # pinned: loaded at start
    assert answer["model"]["id"] == "resident"
    assert answer["model"]["status"] == "ready"


def test_load_no_wait_returns_before_the_model_is_ready(server: Server) -> None:
    result = remote(server, "load", "background", "--no-wait", "--json")
    assert result.returncode == 0, result.stderr
    answer = json_of(result)
    assert answer["waited"] is False
    assert answer["model"]["status"] != "ready"  # the load takes 0.5 s
    deadline = time.monotonic() + 10
    while states(server)["background"] != "ready":
        assert time.monotonic() < deadline, "the background load never finished"
        time.sleep(0.05)  # polling the server, as a user of --no-wait would


def test_load_of_a_failing_model_exits_1_with_the_reason(server: Server) -> None:
    result = remote(server, "load", "broken")
    assert result.returncode == 1
    assert one_error_line(result) == (
        "error: model 'broken' failed to load: RuntimeError: weights are corrupt"
    )
    assert result.stdout == ""
    assert states(server)["broken"] == "failed"


def test_load_json_of_a_failing_model_reports_the_error(server: Server) -> None:
    result = remote(server, "load", "broken", "--json")
    assert result.returncode == 1
    error = json_of(result)["error"]
    assert error["status"] == 503
    assert error["code"] == "load_failed"
    assert "weights are corrupt" in error["message"]
    assert error["exit_code"] == 1


def test_load_shows_a_live_line_on_a_terminal(server: Server) -> None:
    """On a terminal the spinner line shows the state the server reports while loading."""
    code, text, errors = on_a_terminal(
        ["load", "watched", "--url", server.url], {"MODELPOOL_API_KEY": KEY}
    )
    assert code == 0, errors
    assert "loading watched: loading, " in text  # polled while the 0.8 s load ran
    assert "watched loaded in " in text
    assert states(server)["watched"] == "ready"


# --- unload -------------------------------------------------------------------------


def test_unload_exits_0_and_the_model_is_unloaded(server: Server) -> None:
    with ServerClient(server.url, KEY) as client:
        assert client.load("unloadable")["status"] == "ready"
    result = remote(server, "unload", "unloadable")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("unloadable unloaded in ")
    assert result.stdout.strip().endswith(": was ready on cpu (2.0 GB)")
    assert states(server)["unloadable"] == "unloaded"

    again = remote(server, "unload", "unloadable", "--json")
    assert again.returncode == 0, again.stderr
    answer = json_of(again)
    assert answer["was_loaded"] is False
    assert answer["model"]["status"] == "unloaded"


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["load", "unload"])
def test_an_unknown_model_exits_4(server: Server, command: str) -> None:
    result = remote(server, command, "nope")
    assert result.returncode == 4
    assert one_error_line(result).startswith("error: unknown model 'nope'")
    assert result.stdout == ""


@pytest.mark.parametrize("command", [("status",), ("load", "loadable")])
def test_an_unreachable_server_exits_3(command: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = modelpool_cli(*command, "--url", url)
    assert result.returncode == 3
    line = one_error_line(result)
    assert f"cannot connect to {url}" in line
    assert "modelpool serve" in line


@pytest.mark.parametrize("args", [("status", "--url", "ftp://example.com"), ("load",)])
def test_invalid_input_exits_2(args: tuple[str, ...]) -> None:
    result = modelpool_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", [None, "wrong"])
def test_a_missing_or_wrong_key_exits_5(server: Server, key: str | None) -> None:
    given = () if key is None else ("--api-key", key)
    result = modelpool_cli("models", "--url", server.url, *given)
    assert result.returncode == 5
    line = one_error_line(result)
    assert line.startswith("error: authentication failed: ")
    assert "--api-key" in line


def test_the_url_and_key_can_come_from_the_environment(server: Server) -> None:
    result = modelpool_cli(
        "status", "--json", env={"MODELPOOL_URL": server.url, "MODELPOOL_API_KEY": KEY}
    )
    assert result.returncode == 0, result.stderr
    assert json_of(result)["memory_info"]["cpu"]["budget"] == 10 * GB


@pytest.mark.parametrize("command", ["status", "models", "load", "unload"])
def test_help_lists_the_exit_codes(command: str) -> None:
    # In-process: the help text is static, and four more interpreters cost seconds.
    result = CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "3 cannot reach the server" in text
    assert "4 unknown model (404)" in text
    assert "5 authentication failed (401)" in text


# --- the client ---------------------------------------------------------------------


def test_client_events_stream_the_loads_events(server: Server) -> None:
    with ServerClient(server.url, KEY) as client, client.events() as stream:
        client.load("streamed")
        kinds = []
        for event in stream:
            if event["model"] == "streamed":
                kinds.append(event["kind"])
            if kinds[-1:] == ["loaded"]:
                break
    assert kinds == ["load_started", "loaded"]


def test_client_errors_carry_the_status_and_the_servers_message(server: Server) -> None:
    with ServerClient(server.url, KEY) as client, pytest.raises(ApiError) as raised:
        client.model("nope")
    assert raised.value.status == 404
    assert raised.value.code == "model_not_found"
    assert raised.value.message.startswith("unknown model 'nope'")


def test_client_errors_without_openais_shape_keep_the_status_line() -> None:
    """A proxy in front of the server answers in HTML: the status line is the message."""
    page = httpx.Response(502, text="<html>upstream down</html>")
    transport = httpx.MockTransport(lambda request: page)
    with ServerClient(transport=transport) as client, pytest.raises(ApiError) as raised:
        client.status()
    assert raised.value.status == 502
    assert raised.value.message == "HTTP 502 Bad Gateway: <html>upstream down</html>"
    assert raised.value.code is None


def test_the_cli_and_the_client_agree_on_the_default_url() -> None:
    assert cli.DEFAULT_URL == DEFAULT_URL
