"""Answers from in-process models: ``/v1/embeddings`` straight from the loaded object.

A sentence-transformers model (the ``torch`` backend's ``lease.obj``) has ``encode``;
it runs in a worker thread so the event loop keeps serving, and the lease is held until
the thread is done, whatever happens to the request meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

from modelpool.core.lease import Lease
from modelpool.http.errors import ApiError


async def embeddings(lease: Lease, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI embeddings answer for ``payload`` from the lease's in-process model."""
    model = lease.obj
    if not callable(getattr(model, "encode", None)):
        raise ApiError(400, f"The model {lease.model_id!r} does not make embeddings", param="model")
    texts = _texts(payload.get("input"))
    encoding = payload.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, "encoding_format must be 'float' or 'base64'", param="encoding_format")
    if payload.get("dimensions") is not None:
        raise ApiError(
            400, f"The model {lease.model_id!r} has fixed dimensions", param="dimensions"
        )
    # Shielded: a cancelled request must not return the lease while the thread still
    # uses the model (it could be unloaded under it).
    vectors, tokens = await asyncio.shield(asyncio.to_thread(_encode, model, texts))
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(vector, encoding)}
        for i, vector in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": lease.model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _texts(given: object) -> list[str]:
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list) or not given:
        raise ApiError(400, "input must be a string or a non-empty list of strings", param="input")
    if not all(isinstance(text, str) for text in given):
        # Token arrays need the server's tokenizer to match the client's: not supported.
        raise ApiError(
            400, "input must hold strings (token arrays are not supported)", param="input"
        )
    return given


def _encode(model: Any, texts: list[str]) -> tuple[Any, int]:
    """Vectors (float32 rows) and the number of tokens the model read, in a worker thread."""
    vectors = model.encode(texts, convert_to_numpy=True, show_progress_bar=False)
    tokenizer = getattr(model, "tokenizer", None)
    tokens = sum(map(len, tokenizer(texts)["input_ids"])) if callable(tokenizer) else 0
    return vectors, tokens


def _encoded(vector: Any, encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the openai client asks for by default
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return list(vector.tolist())
