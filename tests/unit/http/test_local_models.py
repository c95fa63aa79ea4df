"""In-process embeddings against a fake encoder (the real MiniLM runs in tests/e2e)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np
import pytest

from modelpool.core.lease import Lease
from modelpool.core.ports import Handle
from modelpool.http.errors import ApiError
from modelpool.http.local_models import embeddings


class FakeEncoder:
    """Encodes text as [length, first letter code]; its tokenizer splits on spaces."""

    def encode(self, texts: list[str], **_: Any) -> Any:
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)

    def tokenizer(self, texts: list[str]) -> dict[str, list[list[int]]]:
        return {"input_ids": [list(range(len(t.split()))) for t in texts]}


def lease_on(obj: object) -> Lease:
    handle = Handle("enc", "cpu", obj=obj)
    return Lease(1, "enc", None, 5, "cpu", handle, 0.0, hit=True)


async def test_float_vectors_usage_and_order() -> None:
    answer = await embeddings(lease_on(FakeEncoder()), {"input": ["ab", "one two three"]})
    assert [d["embedding"] for d in answer["data"]] == [[2.0, 97.0], [13.0, 111.0]]
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert answer["model"] == "enc"
    assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


async def test_base64_is_little_endian_float32_as_openai_sends_it() -> None:
    answer = await embeddings(lease_on(FakeEncoder()), {"input": "ab", "encoding_format": "base64"})
    packed = base64.b64decode(answer["data"][0]["embedding"])
    assert struct.unpack("<2f", packed) == (2.0, 97.0)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [[1, 2]]}, "input"),
        ({}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 2}, "dimensions"),
    ],
)
async def test_bad_requests_name_the_field(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as raised:
        await embeddings(lease_on(FakeEncoder()), payload)
    assert raised.value.status == 400
    assert raised.value.param == param


async def test_a_model_without_encode_is_refused() -> None:
    with pytest.raises(ApiError, match="does not make embeddings"):
        await embeddings(lease_on(object()), {"input": "x"})
