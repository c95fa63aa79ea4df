"""Model servers' error answers: passed on only in OpenAI's shape, cleaned and bounded."""

from __future__ import annotations

import json

import pytest

from modelpool.core.upstream import UpstreamAccess
from modelpool.http.upstream_errors import MESSAGE_LIMIT, UpstreamErrorLog, client_error, scrubbed

TRACEBACK = (
    b"Traceback (most recent call last):\n"
    b'  File "/srv/app/secret.py", line 3, in f\n'
    b"RuntimeError: boom\n"
)


@pytest.mark.parametrize(
    "body",
    [
        TRACEBACK,
        b"<html><body>Bad gateway</body></html>",
        b"",
        b'{"detail": "Not Found"}',
        b'{"error": "a string, not an object"}',
        b'{"error": {"msg": "no message field"}}',
        b'{"error": {"message": 42}}',
        b'{"error": {"message": "m", "code": {"nested": true}}}',
        b"[" * 5000,
    ],
)
def test_anything_but_an_openai_error_becomes_our_generic_502(body: bytes) -> None:
    answer = client_error("chat", 500, body)
    assert answer.status == 502
    assert answer.code == "upstream_error"
    assert answer.message.startswith("The server of model 'chat' answered with an error")
    assert "/srv" not in answer.message
    assert "Traceback" not in answer.message


def test_an_openai_error_passes_with_its_status_cleaned_of_paths() -> None:
    body = {
        "error": {
            "message": "cannot open /srv/models/secret/w.gguf or C:\\models\\x.bin",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
            "internal": {"trace": "/srv/app.py"},
        }
    }
    answer = client_error("chat", 400, json.dumps(body).encode())
    assert answer.status == 400
    assert answer.message == "cannot open <path> or <path>"
    assert (answer.kind, answer.param, answer.code) == (
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    )
    sent = json.loads(bytes(answer.response().body))["error"]
    assert set(sent) == {"message", "type", "param", "code"}  # nothing else leaks


def test_a_message_holding_a_traceback_or_a_megabyte_is_cut() -> None:
    traced = {"error": {"message": "failed\n" + TRACEBACK.decode()}}
    assert client_error("chat", 500, json.dumps(traced).encode()).message == "failed"
    huge = {"error": {"message": "x" * 1_000_000}}
    message = client_error("chat", 500, json.dumps(huge).encode()).message
    assert len(message) < MESSAGE_LIMIT + 50
    assert message.endswith("more characters)")


def test_the_whole_body_is_kept_for_operators() -> None:
    kept = UpstreamErrorLog(clock=lambda: 12.0)
    kept.record("chat", 500, TRACEBACK)
    assert kept.recent("chat") == [{"at": 12.0, "status": 500, "body": TRACEBACK.decode()}]
    assert kept.recent("other") == []


@pytest.mark.parametrize("status", [401, 403])
def test_a_server_refusing_modelpool_is_our_502_not_the_clients_401(status: int) -> None:
    body = b'{"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}'
    answer = client_error("far", status, body)
    assert answer.status == 502
    assert answer.code == "upstream_refused"
    assert f"refused modelpool's credentials (HTTP {status})" in answer.message


def test_a_key_echoed_in_an_error_is_scrubbed_longest_first() -> None:
    key = "sk-test-1234567890"
    access = UpstreamAccess(headers={"Authorization": f"Bearer {key}"})
    body = f'{{"error": {{"message": "bad header Bearer {key} and bare {key}"}}}}'.encode()
    cleaned = scrubbed(body, access.secrets)
    assert key.encode() not in cleaned
    assert b"bad header <api_key> and bare <api_key>" in cleaned
    assert key not in repr(access)
