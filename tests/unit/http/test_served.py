"""What a model answers is known from its config, before anything loads."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelpool.config import ModelSpec
from modelpool.http.served import ENDPOINTS, SERVED_BY_BACKEND, served, serves
from modelpool.plugins import BACKENDS


def spec(backend: str, **fields: Any) -> ModelSpec:
    return ModelSpec.model_construct(id="m", backend=backend, options={}, **fields)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("backend", ["process", "a-plugin-nobody-knows"])
def test_server_processes_and_unknown_kinds_are_let_through(backend: str, endpoint: str) -> None:
    assert serves(spec(backend, endpoints=None), endpoint)


def test_llamacpp_serves_chat_and_completions_by_default() -> None:
    model = spec("llamacpp", endpoints=None)
    assert served(model) == ("chat", "completions")
    assert serves(model, "chat/completions")
    assert serves(model, "completions")
    assert not serves(model, "embeddings")


@pytest.mark.parametrize("backend", ["torch", "callable", "fake"])
def test_in_process_models_serve_embeddings_only(backend: str) -> None:
    model = spec(backend, endpoints=None)
    assert serves(model, "embeddings")
    assert not serves(model, "chat/completions")
    assert not serves(model, "completions")


def test_declared_endpoints_replace_the_backends_default() -> None:
    embedder = spec("llamacpp", endpoints=("embeddings",))
    assert served(embedder) == ("embeddings",)
    assert not serves(embedder, "chat/completions")
    chat_only = spec("process", endpoints=("chat",))
    assert serves(chat_only, "chat/completions")
    assert not serves(chat_only, "completions")
    assert not serves(chat_only, "embeddings")


def test_an_in_process_model_cannot_declare_more_than_it_can_answer() -> None:
    assert served(spec("torch", endpoints=("chat", "embeddings"))) == ("embeddings",)
    assert served(spec("torch", endpoints=("chat",))) == ()


def test_every_built_in_backend_is_decided() -> None:
    assert set(BACKENDS.names()) <= set(SERVED_BY_BACKEND)


def test_the_config_reads_endpoints_as_a_list_or_one_name() -> None:
    base = {"id": "m", "backend": "fake", "memory": "1MB"}
    assert ModelSpec.model_validate({**base, "endpoints": "embeddings"}).endpoints == (
        "embeddings",
    )
    listed = ModelSpec.model_validate({**base, "endpoints": ["chat", "chat", "completions"]})
    assert listed.endpoints == ("chat", "completions")
    assert ModelSpec.model_validate(base).endpoints is None


@pytest.mark.parametrize("bad", [["chat/completions"], [], ["speech"]])
def test_the_config_refuses_an_unknown_or_empty_endpoints(bad: list[str]) -> None:
    with pytest.raises(ValidationError) as raised:
        ModelSpec.model_validate({"id": "m", "backend": "fake", "endpoints": bad})
    assert "endpoints" in str(raised.value)
