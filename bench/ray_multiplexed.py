"""Ray Serve's own model multiplexing, written the way Ray's docs show, for
``bench/ray_peer.py``: one deployment whose replicas load models on demand through
``@serve.multiplexed(max_num_models_per_replica=N)``, the model id taken from
``serve.get_multiplexed_model_id()`` (the ``serve_multiplexed_model_id`` header).

A model is what modelpool would run for it, started inside the replica: a chat model
is the same ``llama_cpp.server`` process (the command line modelpool's ``llamacpp``
backend builds), an embedding model the same ``SentenceTransformer`` in the replica's
own process. Ray keeps at most N per replica and evicts the least recently used by
count, calling the model's ``__del__`` (which ends its server), whether or not a
request is still using it; loads on one replica go one at a time (Ray's lock).

Each replica appends one JSON line per load and per eviction to ``events`` (a file the
benchmark reads afterwards): the cold loads and the evictions of a model still serving.
Workers import this module by name: the benchmark puts ``bench/`` on their path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

READY_TIMEOUT = 120.0
STOP_GRACE = 10.0


@dataclass(frozen=True)
class ModelRecipe:
    """How to start one model: a server command (``{port}`` in it) or a folder of
    sentence-transformers weights."""

    command: tuple[str, ...] = ()
    embedding_path: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def note(events: Path, **fields: Any) -> None:
    """One line of the replica's record (appended whole: lines of two replicas never mix)."""
    with events.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"at": time.time(), **fields}) + "\n")


class ChatServer:
    """A model server process the replica started; ended by ``__del__`` (Ray's eviction)."""

    def __init__(self, model_id: str, process: subprocess.Popen[bytes], port: int) -> None:
        self.model_id = model_id
        self.process = process
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300)
        self.serving = 0

    async def answer(self, path: str, body: bytes) -> Response:
        self.serving += 1
        try:
            reply = await self.client.post(
                path, content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as error:  # its server was ended under it (evicted)
            return JSONResponse({"error": {"message": repr(error)}}, status_code=503)
        finally:
            self.serving -= 1
        return Response(reply.content, reply.status_code, media_type="application/json")

    def __del__(self) -> None:
        """Ray calls this on eviction (in a thread); Python again when collected."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Embedder:
    """A sentence-transformers model in the replica's own process."""

    def __init__(self, model_id: str, model: Any) -> None:
        self.model_id = model_id
        self.model = model
        self.serving = 0

    async def answer(self, path: str, body: bytes) -> Response:
        self.serving += 1
        try:
            texts = json.loads(body)["input"]
            texts = [texts] if isinstance(texts, str) else texts
            vectors = await asyncio.to_thread(self.model.encode, texts)
        finally:
            self.serving -= 1
        data = [
            {"object": "embedding", "index": i, "embedding": v.tolist()}
            for i, v in enumerate(vectors)
        ]
        return JSONResponse({"object": "list", "data": data, "model": self.model_id})


async def start_chat_server(model_id: str, recipe: ModelRecipe) -> ChatServer:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in recipe.command]
    # Started as modelpool's process backend starts one (a session of its own); Popen
    # returns at once, the wait for readiness below is asynchronous.
    process = subprocess.Popen(  # noqa: ASYNC220
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    server = ChatServer(model_id, process, port)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{model_id}: its server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if (await server.client.get("/v1/models", timeout=1)).status_code == 200:
                return server
        await asyncio.sleep(0.05)
    server.__del__()
    raise RuntimeError(f"{model_id}: its server was not ready in {READY_TIMEOUT:.0f} s")


def load_embedder(model_id: str, recipe: ModelRecipe) -> Embedder:
    from sentence_transformers import SentenceTransformer

    return Embedder(model_id, SentenceTransformer(recipe.embedding_path, device="cpu"))


def multiplexed_app(
    models: dict[str, ModelRecipe],
    max_models: int,
    events: str,
    *,
    replicas: int = 2,
    num_cpus: float = 0.5,
    max_ongoing_requests: int = 64,
) -> Any:
    """The application: ``replicas`` replicas, each holding at most ``max_models``."""

    @serve.deployment(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus},
        max_ongoing_requests=max_ongoing_requests,
    )
    class MultiplexedModels:
        def __init__(self) -> None:
            # What modelpool's torch backend imports at start (``prepare``), so that
            # both sides start with the same libraries in the replica.
            import sentence_transformers  # noqa: F401
            import torch  # noqa: F401

            self.replica = serve.get_replica_context().replica_tag
            self.events = Path(events)
            self.started: list[ChatServer] = []

        @serve.multiplexed(max_num_models_per_replica=max_models)
        async def get_model(self, model_id: str) -> ChatServer | Embedder:
            recipe = models[model_id]
            started = time.time()
            model: ChatServer | Embedder
            if recipe.command:
                model = await start_chat_server(model_id, recipe)
                self.started.append(model)
            else:
                model = await asyncio.to_thread(load_embedder, model_id, recipe)
            note(self.events, replica=self.replica, load=model_id, seconds=time.time() - started)
            wrap_eviction(model, self.replica, self.events)
            return model

        async def __call__(self, request: Request) -> Response:
            model_id = serve.get_multiplexed_model_id()
            if model_id not in models:
                return JSONResponse({"error": {"message": f"no model {model_id!r}"}}, 404)
            model = await self.get_model(model_id)
            path = "/v1/embeddings" if isinstance(model, Embedder) else "/v1/chat/completions"
            return await model.answer(path, await request.body())

        def __del__(self) -> None:
            for server in self.started:  # the replica ends: so do the servers it started
                server.__del__()

    return MultiplexedModels.bind()


def wrap_eviction(model: ChatServer | Embedder, replica: str, events: Path) -> None:
    """Record Ray's eviction of ``model`` (and whether it was still serving) before the
    model's own ``__del__`` runs: Ray calls the instance's ``__del__`` attribute."""
    own = type(model).__dict__.get("__del__")

    def evicted() -> None:
        note(events, replica=replica, evict=model.model_id, serving=model.serving)
        if own is not None:
            own(model)

    model.__del__ = evicted  # type: ignore[method-assign]
