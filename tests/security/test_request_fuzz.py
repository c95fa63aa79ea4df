"""Hypothesis throws bodies, headers and JSON shapes at the application in-process.

Whatever comes in, the answer is never a 500 and never a crash (the test client
re-raises any exception the application lets out), nothing is logged at ERROR, and
every refusal is a 4xx in OpenAI's error shape that says something.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from modelpool import ModelPool, ModelSpec
from modelpool.config import ServerSettings
from modelpool.http.app import create_app

EXAMPLES = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ORIGIN = "https://app.example"


class Errors(logging.Handler):
    """Every record at ERROR or above, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def errors() -> Iterator[Errors]:
    handler = Errors()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def app_client(errors: Errors) -> Iterator[TestClient]:
    """The server's application around a pool of fake (in-process) models."""
    specs = [
        ModelSpec(id="chat", backend="fake", memory="1GB", device="cpu", aliases=["c"]),
        ModelSpec(id="emb", backend="fake", memory="1GB", device="cpu"),
    ]
    pool = ModelPool(specs, budgets={"cpu": "4GB"}, strategy="lru")
    server = ServerSettings(max_body=64 * 1024, allowed_origins=[ORIGIN])
    app = create_app(pool, server)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        yield client
    assert not errors.records, [r.getMessage() for r in errors.records]


def check(response: Any) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str)
        assert error["message"]
        assert "Traceback" not in error["message"]
        assert len(response.content) < 10_000  # nothing echoed back at length


# --- strategies -------------------------------------------------------------------------

text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
models = st.sampled_from(["chat", "emb", "c", "chat@v2", "nope", "", "../x", "a/b"]) | text
requests = st.fixed_dictionaries(
    {},
    optional={
        "model": models | json_values,
        "messages": json_values
        | st.lists(st.fixed_dictionaries({"role": text, "content": json_values}), max_size=3),
        "input": json_values,
        "prompt": json_values,
        "stream": json_values,
        "encoding_format": st.sampled_from(["float", "base64", "x"]) | json_values,
        "dimensions": json_values,
        "user": json_values,
    },
)
raw_json_bodies = st.sampled_from(
    [
        b'{"model": "chat", "top_p": NaN}',
        b'{"model": "chat", "top_p": Infinity}',
        b"[" * 3000,
        b'{"a": ' * 500 + b"1" + b"}" * 500,
        b'{"model": "\xff"}',
        b"",
        b"null",
        b'"model"',
        b'{"model": "chat"',
    ]
)
deep_bodies = st.integers(1, 5000).map(
    lambda n: b'{"model": "chat", "messages": ' + b"[" * n + b"]" * n + b"}"
)
bodies = (
    raw_json_bodies
    | deep_bodies
    | requests.map(lambda r: json.dumps(r).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
)
v1_paths = st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
paths = st.sampled_from(
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/admin/models/chat/load",
        "/admin/models/chat/unload",
        "/admin/models/emb/pin",
        "/admin/strategy",
        "/admin/rollouts",
        "/admin/rollouts/validate",
        "/admin/models/chat/versions",
        "/admin/events",
        "/metrics",
    ]
) | text.map(lambda t: "/" + t.lstrip("/"))
content_types = (
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ]
    )
    | text
)
header_names = st.sampled_from(
    ["origin", "host", "content-encoding", "authorization", "x-api-key", "x-sticky-key", "accept"]
)
extra_headers = st.lists(
    st.tuples(
        header_names,
        st.sampled_from([ORIGIN, "null", "http://127.0.0.1:8080", "gzip", "localhost", ""]) | text,
    ),
    max_size=3,
)


# --- the properties ---------------------------------------------------------------------


@EXAMPLES
@given(body=bodies, path=v1_paths)
def test_any_body_to_a_model_endpoint_gets_an_answer_not_a_crash(
    app_client: TestClient, body: bytes, path: str
) -> None:
    check(app_client.post(path, content=body, headers={"content-type": "application/json"}))


@EXAMPLES
@given(body=bodies, path=paths, method=st.sampled_from(["POST", "PUT", "DELETE", "PATCH"]))
def test_any_json_body_gets_an_answer_not_a_crash(
    app_client: TestClient, body: bytes, path: str, method: str
) -> None:
    headers = {"content-type": "application/json"}
    check(app_client.request(method, path, content=body, headers=headers))


@EXAMPLES
@given(
    body=bodies,
    path=paths,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]),
    kind=st.none() | content_types,
    headers=extra_headers,
)
def test_any_headers_get_an_answer_not_a_crash(
    app_client: TestClient,
    body: bytes,
    path: str,
    method: str,
    kind: str | None,
    headers: list[tuple[str, str]],
) -> None:
    sent = [("content-type", kind)] if kind is not None else []
    response = app_client.request(method, path, content=body, headers=[*sent, *headers])
    if method == "HEAD":
        assert response.status_code < 500
        return
    check(response)
