"""``modelpool serve --ray`` as a user runs it: a local Ray started by the command, one
pool replica over a real model server process (``tiny_server.py``), the ``openai``
client through Ray Serve's HTTP proxy; Ctrl-C stops it all and no model server is left
behind (skipped without the ``ray`` extra); without it, ``--ray`` says what to install."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest
import yaml
from server_process import free_port

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
START = 90.0
STOP = 60.0


def tiny_servers(tag: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if TINY in cmdline and tag in cmdline:
            found.append(process)
    return found


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_serve_on_ray_answers_and_stops_clean(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    port, tag = free_port(), f"ray-cli-{os.getpid()}"
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}"]
    config = {
        "pool": {"budgets": {"cpu": "1GB"}, "state_dir": str(tmp_path / "state")},
        "cluster": {"replicas": 1, "num_cpus": 0.5, "http_port": port},
        "models": {
            "echo": {
                "backend": "process",
                "command": [*command, "--tag", tag],
                "memory": "50MB",
                "device": "cpu",
            }
        },
    }
    path = tmp_path / "modelpool.yaml"
    path.write_text(yaml.safe_dump(config))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELPOOL_")}
    environ |= {"RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "modelpool", "serve", "--ray", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START
        while True:
            assert process.poll() is None, process.communicate()[0][-3000:]
            try:
                if httpx.get(f"{base}/admin/status", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve --ray did not answer in time"
            time.sleep(0.5)
        with openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0) as client:
            answer = client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "via ray"}]
            )
        assert answer.choices[0].message.content == "echo: via ray"
        assert len(tiny_servers(tag)) == 1
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=STOP)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise
    assert process.returncode == 0, output[-3000:]
    left = tiny_servers(tag)
    for server in left:  # ours, by tag: do not leave them running for other tests
        server.kill()
    assert left == [], "a model server outlived serve --ray"


def test_serve_ray_without_the_extra_says_what_to_install() -> None:
    hide_ray = "import sys; sys.modules['ray'] = None; from modelpool.cli import main; main()"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELPOOL_")}
    done = subprocess.run(
        [sys.executable, "-c", hide_ray, "serve", "--ray"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environ,
    )
    assert done.returncode == 2, done.stderr
    assert "--ray needs the 'ray' extra" in done.stderr
    assert "pip install 'modelpool[server,ray]'" in done.stderr
