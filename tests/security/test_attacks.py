"""A hostile client, a crashing model server and a flaky network against one real
``modelpool serve`` (issue 14). Requests go out as raw bytes where a well-behaved
client (httpx) would tidy them: duplicate headers, dot segments, bodies that never end.

The table at the top holds the single-request cases; the tests below it need more than
one request, a model server that misbehaves, or the clock.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from conftest import KEY, MAX_BODY, MAX_CONNECTIONS, ORIGIN, TIMEOUT
from server_process import Server

SLACK = 4.0
"""Seconds past a timeout by which the server must have acted (a loaded 2-core box)."""


# --- raw HTTP -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        error = json.loads(self.body)["error"]
        assert set(error) >= {"message", "type", "param", "code"}, error
        return dict(error)


def port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port(server)), timeout=timeout)


def raw_request(
    server: Server,
    method: str,
    target: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    leave_out: frozenset[str] = frozenset(),
) -> bytes:
    """The bytes of one request: ``Host``, the key, a JSON type and a length unless left
    out (by lower-case name), then ``headers`` as given (duplicates too)."""
    default = {
        "host": f"127.0.0.1:{port(server)}",
        "authorization": f"Bearer {KEY}",
        "content-type": "application/json",
        "content-length": str(len(body)),
        "connection": "close",
    }
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in default.items() if name not in leave_out]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(server: Server, data: bytes) -> Answer:
    """Send ``data``, read until the server closes, parse the one answer.

    Sent from a thread while this one reads: a server that refuses a large body
    answers before it has read it all, and closes with the rest unread (a reset).
    """
    with connect(server) as sock:

        def send() -> None:
            with contextlib.suppress(OSError):  # the server stopped reading: refused
                sock.sendall(data)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            received = read_to_close(sock)
        finally:
            sender.join(30)
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def read_to_close(sock: socket.socket) -> bytes:
    """Everything until the server closes or resets (a socket timeout fails the test)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


# --- single-request cases -------------------------------------------------------------


@dataclass
class Case:
    name: str
    method: str
    target: str
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    leave_out: frozenset[str] = frozenset()
    code: str | None = None
    """The error's ``code``, when the answer is an error."""


CHAT = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}).encode()
NO_CT = frozenset({"content-type"})
NO_KEY = frozenset({"authorization"})
NO_HOST = frozenset({"host"})


def nested(levels: int) -> bytes:
    return b'{"model": "tiny", "messages": ' + b"[" * levels + b"]" * levels + b"}"


def chunked(size: int) -> bytes:
    piece = b"x" * 4096
    chunks = [f"{len(piece):x}\r\n".encode() + piece + b"\r\n"] * (size // len(piece) + 1)
    return b"".join(chunks) + b"0\r\n\r\n"


BOMB = gzip.compress(b"0" * 50 * 1024**2)  # 50 MB of zeros in about 50 KB
CASES = [
    # Cross-site requests (defect 4): a page may send text/plain or a form anywhere.
    Case("text/plain chat", "POST", "/v1/chat/completions", 415, CHAT,
         [("content-type", "text/plain")], NO_CT, "unsupported_media_type"),
    Case("form-encoded load", "POST", "/admin/models/tiny/load", 415, b"model=tiny",
         [("content-type", "application/x-www-form-urlencoded")], NO_CT,
         "unsupported_media_type"),
    Case("a body without a type", "POST", "/v1/chat/completions", 415, CHAT, [], NO_CT,
         "unsupported_media_type"),
    Case("foreign Origin, load", "POST", "/admin/models/tiny/unload", 403, b"",
         [("origin", "https://evil.example")], code="origin_not_allowed"),
    Case("foreign Origin, chat", "POST", "/v1/chat/completions", 403, CHAT,
         [("origin", "http://127.0.0.1:1")], code="origin_not_allowed"),
    Case("null Origin", "GET", "/v1/models", 403, headers=[("origin", "null")],
         code="origin_not_allowed"),
    Case("allowed Origin", "GET", "/v1/models", 200, headers=[("origin", ORIGIN)]),
    # Keys: compared exactly, case included.
    Case("no key", "GET", "/v1/models", 401, leave_out=NO_KEY, code="invalid_api_key"),
    Case("key in lower case", "GET", "/v1/models", 401,
         headers=[("authorization", f"Bearer {KEY.lower()}")], leave_out=NO_KEY,
         code="invalid_api_key"),
    Case("key in upper case", "GET", "/v1/models", 401,
         headers=[("x-api-key", KEY.upper())], leave_out=NO_KEY, code="invalid_api_key"),
    Case("key as a prefix", "GET", "/v1/models", 401,
         headers=[("authorization", f"Bearer {KEY[:-1]}")], leave_out=NO_KEY,
         code="invalid_api_key"),
    Case("key as Basic", "GET", "/v1/models", 401,
         headers=[("authorization", f"Basic {KEY}")], leave_out=NO_KEY,
         code="invalid_api_key"),
    Case("key in X-API-Key", "GET", "/v1/models", 200,
         headers=[("x-api-key", KEY)], leave_out=NO_KEY),
    Case("healthz needs no key", "GET", "/healthz", 200, leave_out=NO_KEY),
    # Host (DNS rebinding), every Host header (defect 9).
    Case("foreign Host", "GET", "/v1/models", 421, headers=[("host", "evil.example")],
         leave_out=NO_HOST, code="host_not_allowed"),
    Case("rebinding Host", "GET", "/v1/models", 421,
         headers=[("host", "127.0.0.1.evil.example")], leave_out=NO_HOST,
         code="host_not_allowed"),
    Case("two Host headers, foreign last", "GET", "/v1/models", 421,
         headers=[("host", "evil.example")], code="host_not_allowed"),
    Case("two Host headers, foreign first", "GET", "/v1/models", 421,
         headers=[("host", "evil.example"), ("host", "127.0.0.1")], leave_out=NO_HOST,
         code="host_not_allowed"),
    # Path tricks: dot segments and encoded slashes reach no other route.
    Case("dot segments", "GET", "/v1/../admin/status", 404),
    Case("encoded dot segments", "GET", "/v1/%2e%2e/admin/status", 404),
    Case("encoded slashes in a model id", "POST", "/admin/models/..%2F..%2Fetc%2Fpasswd/load",
         404),
    Case("a dot-dot model id", "GET", "/admin/models/%2e%2e", 404, code="model_not_found"),
    Case("a path as a model", "POST", "/v1/chat/completions", 404,
         json.dumps({"model": "../../etc/passwd", "messages": []}).encode(),
         code="model_not_found"),
    Case("GET on a model endpoint", "GET", "/v1/chat/completions", 405,
         code="method_not_allowed"),
    # Bodies: size, compression, JSON that hurts parsers (defect 7).
    Case("declared body over the limit", "POST", "/v1/chat/completions", 413, b"",
         [("content-length", str(MAX_BODY + 1))], frozenset({"content-length"}),
         "request_too_large"),
    Case("chunked body over the limit", "POST", "/v1/chat/completions", 413,
         chunked(MAX_BODY + 1), [("transfer-encoding", "chunked")],
         frozenset({"content-length"}), "request_too_large"),
    Case("gzip bomb", "POST", "/v1/chat/completions", 415, BOMB,
         [("content-encoding", "gzip")], code="unsupported_media_type"),
    Case("JSON 1,000 levels deep", "POST", "/v1/chat/completions", 400, nested(1000)),
    Case("JSON 100,000 levels deep", "POST", "/v1/chat/completions", 400, b"[" * 100_000),
    Case("NaN", "POST", "/v1/chat/completions", 400, b'{"model": "tiny", "top_p": NaN}'),
    Case("Infinity", "POST", "/v1/chat/completions", 400,
         b'{"model": "tiny", "top_p": -Infinity}'),
    Case("not UTF-8", "POST", "/v1/chat/completions", 400, b'{"model": "\xff\xfe"}'),
    # A request that can only end in 400 (defect 6; the state is checked below).
    Case("chat from an embeddings-only model", "POST", "/v1/chat/completions", 400,
         json.dumps({"model": "embedder", "messages": []}).encode()),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_single_request(server: Server, case: Case) -> None:
    answer = exchange(
        server, raw_request(server, case.method, case.target, case.body, case.headers,
                            case.leave_out)
    )  # fmt: skip
    assert answer.status == case.status, answer.body[:500]
    if case.status >= 400:
        error = answer.error()  # every refusal in OpenAI's shape
        if case.code is not None:
            assert error["code"] == case.code
        assert "Traceback" not in error["message"]
        assert "/srv" not in error["message"]


def test_an_unknown_model_name_is_echoed_cut(server: Server) -> None:
    name = "m" * 1_000_000
    body = json.dumps({"model": name, "messages": []}).encode()
    answer = exchange(server, raw_request(server, "POST", "/v1/chat/completions", body))
    assert answer.status == 404
    message = answer.error()["message"]
    assert len(answer.body) < 2_000
    assert "more characters" in message


# --- helpers over httpx -----------------------------------------------------------------


def http(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {KEY}"}, timeout=30)


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=KEY, max_retries=0)


def model_view(server: Server, model: str) -> dict[str, Any]:
    with http(server) as session:
        response = session.get(f"/admin/models/{model}")
    response.raise_for_status()
    return dict(response.json())


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)  # polling state the server reports only when asked


def load(server: Server, model: str, *, fresh: bool = False) -> None:
    """``model`` loaded; ``fresh``: in a new process (after a test that crashed it)."""
    with http(server) as session:
        if fresh:
            session.post(f"/admin/models/{model}/unload").raise_for_status()
        session.post(f"/admin/models/{model}/load").raise_for_status()
    assert model_view(server, model)["status"] == "ready"


# --- a model server that breaks off a stream (defect 1) --------------------------------


def test_a_stream_broken_off_raises_in_the_openai_client(server: Server) -> None:
    load(server, "crashy", fresh=True)
    received: list[str | None] = []

    def read_all() -> None:
        with (
            client(server) as openai_client,
            openai_client.chat.completions.create(
                model="crashy",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                extra_body={"tiny_chunks": 10, "tiny_die_after": 2},
            ) as stream,
        ):
            for chunk in stream:
                received.append(chunk.choices[0].delta.content)

    with pytest.raises((openai.APIError, httpx.HTTPError)) as raised:
        read_all()
    assert received == ["crashy: hi 0", "crashy: hi 1"]  # what came, then an error
    assert "broke off" in str(raised.value)


def test_a_stream_broken_off_ends_with_an_error_event_and_no_clean_end(server: Server) -> None:
    load(server, "crashy", fresh=True)
    body = {"model": "crashy", "messages": [], "stream": True, "tiny_die_after": 1}
    parts: list[bytes] = []

    def read_all() -> None:
        with (
            http(server) as session,
            session.stream("POST", "/v1/chat/completions", json=body) as response,
        ):
            assert response.status_code == 200
            parts.extend(response.iter_raw())

    with pytest.raises(httpx.RemoteProtocolError):  # the chunked body never ended
        read_all()
    seen = b"".join(parts)
    assert b"event: error" in seen
    assert b'"code": "upstream_broke_off"' in seen
    assert b"[DONE]" not in seen
    # The abort is one WARNING line in the server's log, not a crash's stack trace.
    wait_for(lambda: "aborted a response" in server.log())
    assert "Exception in ASGI application" not in server.log()


# --- upstream error bodies (defect 5) ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("traceback", 502, "upstream_error"), ("html", 502, "upstream_error"),
     ("openai", 400, "context_length")],
)  # fmt: skip
def test_model_server_errors_reach_clients_only_cleaned(
    server: Server, kind: str, status: int, code: str
) -> None:
    body = {"model": "tiny", "messages": [], "tiny_error": kind}
    with http(server) as session:
        answer = session.post("/v1/chat/completions", json=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code
    assert "/srv" not in answer.text
    assert "/opt" not in answer.text
    assert "Traceback" not in answer.text
    if kind == "openai":
        assert error["message"] == "prompt too long for <path> (n_ctx 512)"
    view = model_view(server, "tiny")
    kept = view["upstream_errors"]
    assert any(kind != "traceback" or "secret_module.py" in e["body"] for e in kept)
    assert kept[-1]["status"] == {"traceback": 500, "html": 502, "openai": 400}[kind]
    # The whole answer is in the model's own log too, marked as modelpool's note.
    noted = [line for line in view["log_tail"] if line.startswith("[modelpool] answered HTTP")]
    assert noted, view["log_tail"]
    if kind == "traceback":
        assert any("secret_module.py" in line for line in view["log_tail"])


# --- nothing loads for a request that can only fail (defect 6) --------------------------


def test_a_request_that_can_only_end_in_400_loads_nothing(server: Server) -> None:
    load(server, "tiny")
    loads_before = model_view(server, "tiny")["load_count"]
    with client(server) as openai_client, pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(model="embedder", messages=[])
    assert "does not serve /v1/chat/completions" in raised.value.message
    assert model_view(server, "tiny")["status"] == "ready"  # not evicted
    assert model_view(server, "tiny")["load_count"] == loads_before
    assert model_view(server, "embedder")["status"] == "unloaded"  # not loaded
    assert model_view(server, "embedder")["load_count"] == 0


# --- client mistakes are client errors (defect 7) ---------------------------------------


def metric_lines(server: Server, name: str) -> list[str]:
    with http(server) as session:
        text = session.get("/metrics").text
    return [line for line in text.splitlines() if line.startswith(name)]


def test_clients_that_leave_mid_body_are_counted_as_client_errors(server: Server) -> None:
    before = len(server.log())
    # The admin route first: the /v1 ones are counted, and are waited for below.
    for target in ("/admin/rollouts", "/v1/chat/completions"):
        request = raw_request(server, "POST", target, CHAT)
        cut = request[: -len(CHAT) // 2]  # the headers promise more than is sent
        for _ in range(20):
            with connect(server) as sock:
                sock.sendall(cut)

    # Each disconnect is a finished request with status 499: wait until all are in.
    def counted() -> bool:
        lines = metric_lines(server, 'modelpool_requests_total{endpoint="chat/completions"')
        return any('status="499"' in line and float(line.split()[-1]) >= 20 for line in lines)

    wait_for(counted)
    statuses = metric_lines(server, "modelpool_requests_total")
    assert not [line for line in statuses if 'status="500"' in line]
    added = server.log()[before:]
    assert "Traceback" not in added
    assert "ERROR" not in added


# --- timeouts and the connection cap (defect 3) -----------------------------------------


def closed_within(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sent before closing, and how long it took to close."""
    sock.settimeout(seconds)
    started = time.monotonic()
    received = read_to_close(sock)
    return received, time.monotonic() - started


def test_a_connection_that_says_nothing_is_closed(server: Server) -> None:
    with connect(server) as sock:
        received, took = closed_within(sock, TIMEOUT + SLACK)
    assert received.startswith(b"HTTP/1.1 408")
    assert took >= TIMEOUT * 0.5


def test_slowloris_headers_are_cut_off(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        sock.settimeout(TIMEOUT + SLACK)
        received = b""
        try:
            for index in range(100):  # a header line every quarter of the timeout
                sock.sendall(f"X-Slow-{index}: a\r\n".encode())
                time.sleep(TIMEOUT / 4)  # the attacker's pace: the thing under test
        except (BrokenPipeError, ConnectionResetError):
            pass
        received += read_to_close(sock)
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert received.startswith(b"HTTP/1.1 408")


def test_a_chunked_body_that_never_ends_is_cut_off(server: Server) -> None:
    request = raw_request(
        server, "POST", "/v1/chat/completions",
        headers=[("transfer-encoding", "chunked")], leave_out=frozenset({"content-length"}),
    )  # fmt: skip
    with connect(server) as sock:
        sock.sendall(request + b'5\r\n{"mod\r\n')
        received, took = closed_within(sock, TIMEOUT + SLACK)
    assert took < TIMEOUT + SLACK
    assert not received.startswith(b"HTTP/1.1 2")


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    request = raw_request(server, "GET", "/healthz", leave_out=frozenset({"connection"}))
    with connect(server) as sock:
        sock.sendall(request)
        received, took = closed_within(sock, TIMEOUT + SLACK)
    assert received.startswith(b"HTTP/1.1 200")
    assert took < TIMEOUT + SLACK


def test_connections_beyond_the_cap_are_refused(server: Server) -> None:
    extra = 6
    sockets = [connect(server) for _ in range(MAX_CONNECTIONS + extra)]
    try:
        refused = 0
        for sock in sockets:
            sock.settimeout(TIMEOUT / 2)  # a refusal comes at once; a held one waits
            try:
                first = sock.recv(64)
            except TimeoutError:
                continue
            refused += first.startswith(b"HTTP/1.1 503")
        assert refused >= extra
        assert MAX_CONNECTIONS + extra - refused <= MAX_CONNECTIONS  # never more held
    finally:
        for sock in sockets:
            sock.close()

    def answers() -> bool:
        with http(server) as session:
            return session.get("/healthz").status_code == 200

    wait_for(answers)  # once they are gone, the server answers again


def test_a_stream_longer_than_every_timeout_completes(server: Server) -> None:
    load(server, "tiny")
    chunks = 6
    pause = TIMEOUT / 2  # the whole stream lasts three timeouts
    started = time.monotonic()
    with (
        client(server) as openai_client,
        openai_client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "go"}],
            stream=True,
            extra_body={"tiny_chunks": chunks, "tiny_chunk_seconds": pause},
        ) as stream,
    ):
        contents = [chunk.choices[0].delta.content for chunk in stream]
    assert time.monotonic() - started >= chunks * pause * 0.9
    assert contents == [f"tiny: go {i}" for i in range(chunks)]


# --- GET changes nothing (defect 4) -----------------------------------------------------


def test_no_get_route_changes_anything(server: Server) -> None:
    with http(server) as session:
        spec = session.get("/admin/openapi.json").json()
        paths = [p for p, methods in spec["paths"].items() if "get" in methods]
        paths += ["/v1/models", "/healthz", "/readyz", "/metrics", "/ui"]

        def snapshot() -> tuple[Any, ...]:
            models = session.get("/admin/models").json()["models"]
            events = session.get("/admin/events", params={"limit": 1}).json()["events"]
            return tuple((m["id"], m["status"], m["load_count"]) for m in models), events

        before = snapshot()
        for path in paths:
            for model in ("tiny", "crashy", "embedder"):
                target = path.format(model=model, version="v1", operation_id="op-1")
                if target.endswith("/stream"):
                    with session.stream("GET", target) as response:
                        assert response.status_code == 200
                        next(response.iter_raw())  # subscribed; leaving changes nothing
                    continue
                assert session.get(target).status_code < 500, target
        assert snapshot() == before


def test_the_server_log_holds_no_traceback(server: Server) -> None:
    """Run last: every case above left at most a line, never a stack trace."""
    lines = server.log().splitlines()
    # A model server's error body is logged whole, inside its WARNING line: ours would
    # start a line of its own.
    assert not [line for line in lines if line.startswith("Traceback")], "\n".join(lines)
    assert not [line for line in lines if line.startswith("ERROR")], "\n".join(lines)
