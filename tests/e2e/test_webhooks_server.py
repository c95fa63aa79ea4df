"""Alert webhooks from a real ``modelpool serve`` to receivers on 127.0.0.1 started here.

One receiver records every POST (``http.server`` in a thread) and must get the critical
alert of a canary that fails 30 % of its answers, with the header whose secret came from
the environment. Another accepts connections and never answers: requests must be as
fast while the server's sender hangs on it as they are with no webhook at all, and the
sender must give up after its timeout and retries, with one connection open at a time.

The model servers are ``tiny_server.py`` processes (see ``test_rollout_admin.py``).
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_process import Server, running_server

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
TIMEOUT = 30.0
TOKEN = "hook-token-3f9a"  # only in the environment; must never reach the server's log
REQUESTS = 40  # per latency sample


def tiny(name: str, *flags: str) -> dict[str, Any]:
    return {"command": [sys.executable, TINY, "--port", "${PORT}", "--name", name, *flags]}


class RecordingReceiver:
    """An HTTP server on a free loopback port that answers 200 and keeps every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._arrived:
                    receiver.posts.append((self.path, dict(self.headers), body))
                    receiver._arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass  # the test reads posts, not a log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def wait_for(self, match: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, str], Any]:
        """The headers and body of the first POST ``match`` accepts (waiting for it)."""
        deadline = time.monotonic() + TIMEOUT
        with self._arrived:
            while True:
                for _, headers, body in self.posts:
                    if match(body):
                        return headers, body
                left = deadline - time.monotonic()
                assert left > 0, f"no matching alert; got {[b for _, _, b in self.posts]}"
                self._arrived.wait(left)


class HungReceiver:
    """Accepts connections on a free loopback port, reads what comes, never answers.

    Counts the connections, and how many were open at once (a closed one is noticed
    before a new one is counted, so two in a row never look concurrent).
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HungReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    def _run(self) -> None:
        connections: list[socket.socket] = []
        while not self._stop.is_set():
            readable, _, _ = select.select([self._listener, *connections], [], [], 0.05)
            for ready in sorted(readable, key=lambda s: s is self._listener):
                if ready is self._listener:
                    connection, _ = self._listener.accept()
                    connections.append(connection)
                    self.accepted += 1
                elif not ready.recv(65536):  # the sender gave up on it
                    connections.remove(ready)
                    ready.close()
            self.open = len(connections)
            self.most_open = max(self.most_open, self.open)
        for connection in connections:
            connection.close()


def wait_until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)  # polling a server process and a receiver thread


def deliveries(server: Server) -> dict[str, float]:
    """``modelpool_webhook_deliveries_total`` by outcome, from the server's metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("modelpool_webhook_deliveries_total{"):
            labels, value = line.rsplit(" ", 1)
            assert "/hook" not in labels  # a host, never the URL
            outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
            found[outcome] = found.get(outcome, 0.0) + float(value)
    return found


def admin(server: Server, path: str, method: str = "GET", **kw: Any) -> Any:
    response = httpx.request(method, f"{server.url}/admin/{path}", timeout=30, **kw)
    assert response.status_code < 300, response.text
    return response.json()


def ask(server: Server, model: str) -> str:
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    content = reply.choices[0].message.content
    assert content is not None
    return content.split(":", 1)[0]


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as running:
        yield running


def test_the_canarys_critical_alert_reaches_the_receiver(receiver: RecordingReceiver) -> None:
    config = {
        "pool": {"budgets": {"cpu": "1GB"}},
        "health": {"interval": "0.1s", "window": "60s", "thresholds": {"min_requests": 10}},
        "alerts": {
            "webhooks": [
                {"url": receiver.url, "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}}
            ]
        },
        "models": {
            "tiny": {
                "backend": "process",
                **tiny("tiny-v1"),
                "memory": "50MB",
                "device": "cpu",
                "versions": {"bad": tiny("tiny-bad", "--fail-requests", "0.3")},
            }
        },
    }
    with running_server(config, env={"HOOK_TOKEN": TOKEN}) as server:
        assert ask(server, "tiny") == "tiny-v1"
        body = {"model": "tiny", "target_version": "bad", "strategy": "canary"}
        body["config"] = {"initial_percentage": 50, "period": "10m"}
        op = admin(server, "rollouts", "POST", json=body)["operation_id"]
        deadline = time.monotonic() + TIMEOUT
        while admin(server, f"rollouts/{op}")["status"] in ("pending", "running"):
            assert time.monotonic() < deadline
            # The bad version's scripted failures raise: they are what raises the alert.
            with contextlib.suppress(openai.InternalServerError):
                ask(server, "tiny")
        assert admin(server, f"rollouts/{op}")["status"] == "rolled_back"

        headers, alert = receiver.wait_for(
            lambda b: (b["model_id"], b["version"], b["level"]) == ("tiny", "bad", "critical")
        )
        assert alert["status"] == "raised"
        assert alert["resolved"] is False
        assert alert["metric"] == "error_rate"
        assert alert["value"] >= alert["threshold"] == 0.2
        assert re.fullmatch(
            r"CRITICAL: tiny@bad error rate 0\.\d\d >= 0\.20 \(raised\)", alert["text"]
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", alert["at"])
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["Content-Type"] == "application/json"
        wait_until("the delivery is counted", lambda: deliveries(server).get("sent", 0) >= 1)
        assert deliveries(server)["failed"] == 0
        assert TOKEN not in server.log()


def latency_config(hook: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "pool": {"budgets": {"cpu": "1GB"}},
        "health": {"interval": "0.1s", "window": "60s", "thresholds": {"min_requests": 5}},
        "alerts": {"webhooks": [hook] if hook else []},
        "models": {
            "tiny": {"backend": "process", **tiny("tiny"), "memory": "50MB", "device": "cpu"},
            "broken": {
                "backend": "process",
                **tiny("broken", "--fail-requests", "1.0"),
                "memory": "50MB",
                "device": "cpu",
            },
        },
    }


class SteadyRequests:
    """Sends chat requests to the healthy model one after another from a thread, from
    ``__enter__`` to ``__exit__``, and keeps each one's seconds."""

    def __init__(self, server: Server) -> None:
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self._server = server
        self._counted = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyRequests:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        with self._counted:
            while len(self.seconds) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.seconds)} requests answered: {self.failures}"
                self._counted.wait(left)

    def _run(self) -> None:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=self._server.v1, timeout=TIMEOUT) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                answer = client.post("/chat/completions", json=body)
                if answer.status_code != 200:
                    self.failures.append(answer.text)
                with self._counted:
                    self.seconds.append(time.perf_counter() - started)
                    self._counted.notify_all()


def break_the_model(server: Server) -> None:
    """Send ``broken`` the requests (all of them fail) that raise its critical alert."""
    body = {"model": "broken", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=server.v1, timeout=30) as client:
        for _ in range(5):
            assert client.post("/chat/completions", json=body).status_code >= 500
    alerts = admin(server, "alerts")["alerts"]
    assert [(a["model_id"], a["level"]) for a in alerts] == [("broken", "critical")]


def latencies(server: Server, hung: HungReceiver | None = None) -> list[float]:
    """Seconds of the healthy model's requests, sent one after another from before the
    alert is raised until ``REQUESTS`` more have been answered after it (with ``hung``:
    after the sender has hung on it)."""
    assert ask(server, "tiny") == "tiny"  # loaded
    with SteadyRequests(server) as steady:
        steady.wait_for(5)
        break_the_model(server)
        if hung is not None:
            wait_until("the sender hangs on the receiver", lambda: hung.open == 1)
        steady.wait_for(len(steady.seconds) + REQUESTS)
    assert steady.failures == []
    return steady.seconds


@pytest.mark.slow
def test_a_receiver_that_never_answers_does_not_slow_requests() -> None:
    with running_server(latency_config(None)) as server:
        without_webhook = latencies(server)

    attempts, timeout = 2, 5.0
    with HungReceiver() as hung:
        hook = {"url": hung.url, "timeout": f"{timeout}s", "attempts": attempts}
        hook |= {"backoff": "0.2s", "levels": ["critical"]}
        with running_server(latency_config(hook)) as server:
            with_hung_webhook = latencies(server, hung)
            # Not given up yet: every request after the alert ran while the sender was
            # stuck on the receiver (giving up takes attempts × timeout).
            assert deliveries(server) == {"sent": 0, "failed": 0, "dropped": 0}

            wait_until("the sender gives up", lambda: deliveries(server)["failed"] == 1)
            assert hung.accepted == attempts  # one alert, tried `attempts` times
            assert hung.most_open == 1  # one try at a time: nothing piles up
            wait_until("the last try's connection is closed", lambda: hung.open == 0)
            log = server.log()
    assert re.search(r"alert webhook 127\.0\.0\.1:\d+: gave up on an alert", log)
    assert "/hook" not in log
    # No request waited on the receiver: none took as long as one try at it (a handler
    # that sent the alert itself would hold the server's loop that long)...
    assert max(with_hung_webhook) < timeout
    # ...and typical requests are as fast as with no webhook at all.
    median, baseline = statistics.median(with_hung_webhook), statistics.median(without_webhook)
    assert median / baseline < 3 or median - baseline < 0.02, (
        f"median {median * 1000:.1f} ms with a hung receiver, "
        f"{baseline * 1000:.1f} ms without a webhook"
    )
