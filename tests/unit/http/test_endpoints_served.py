"""A request for what a model does not serve is our 400, before any load; ``/v1/models``
says what each model serves. Through the server's application around a pool whose
models are never loaded (a refused request must not load them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from modelpool.config import ModelSpec, ServerSettings
from modelpool.core.pool import ModelPool
from modelpool.http.app import create_app


@pytest.fixture
def client() -> Iterator[TestClient]:
    specs = [
        # No GGUF file: loading it would fail, so a 400 that loaded it would show.
        ModelSpec.model_validate(
            {"id": "chat", "backend": "llamacpp", "model_path": "/no/such.gguf", "memory": "1GB"}
        ),
        ModelSpec.model_validate(
            {
                "id": "embedder",
                "backend": "llamacpp",
                "model_path": "/no/such.gguf",
                "memory": "1GB",
                "endpoints": ["embeddings"],
            }
        ),
        ModelSpec(id="emb", backend="fake", memory="1GB", device="cpu"),
    ]
    pool = ModelPool(specs, budgets={"cpu": "4GB"}, strategy="lru")
    app = create_app(pool, ServerSettings())
    with TestClient(app, base_url="http://127.0.0.1:8080") as test_client:
        yield test_client


def test_models_lists_what_each_model_serves(client: TestClient) -> None:
    listed = {entry["id"]: entry for entry in client.get("/v1/models").json()["data"]}
    assert listed["chat"]["endpoints"] == ["chat", "completions"]
    assert listed["embedder"]["endpoints"] == ["embeddings"]
    assert listed["emb"]["endpoints"] == ["embeddings"]
    assert listed["chat"]["object"] == "model"  # still OpenAI's shape


@pytest.mark.parametrize(
    ("model", "path", "serves"),
    [
        ("chat", "embeddings", "chat, completions"),
        ("embedder", "chat/completions", "embeddings"),
        ("embedder", "completions", "embeddings"),
        ("emb", "chat/completions", "embeddings"),
    ],
)
def test_an_endpoint_a_model_does_not_serve_is_a_400_before_any_load(
    client: TestClient, model: str, path: str, serves: str
) -> None:
    answer = client.post(f"/v1/{path}", json={"model": model, "input": "hi", "messages": []})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["message"] == (
        f"The model {model!r} does not serve /v1/{path}; its endpoints are {serves}"
    )
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "model",
        "unsupported_endpoint",
    )
    status = client.get("/admin/status").json()
    assert status["model_resources"][model]["load_count"] == 0
    assert status["model_resources"][model]["load_failures"] == 0
    assert status["model_resources"][model]["status"] == "unloaded"
