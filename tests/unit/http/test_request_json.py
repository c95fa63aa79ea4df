"""Request bodies read as JSON objects: every refusal a 400 that says why, never a crash."""

from __future__ import annotations

import pytest

from modelpool.http.errors import ApiError
from modelpool.http.request_json import MAX_DEPTH, depth, json_object


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON: Expecting property name"),
        (b'{"a": 1,\n "b": }', "line 2"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"temperature": NaN}', "NaN is not a JSON number"),
        (b'{"temperature": Infinity}', "Infinity is not a JSON number"),
        (b'{"temperature": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": ' + b"[" * 1000 + b"]" * 1000 + b"}", f"deeper than {MAX_DEPTH}"),
        (b"[" * 100_000, "deeper than"),  # Python's parser recurses: bounded before it
        (b'{"a": ' + b'{"b": ' * 70 + b"1" + b"}" * 70 + b"}", f"deeper than {MAX_DEPTH}"),
    ],
)
def test_bodies_that_are_refused_say_why(body: bytes, needle: str) -> None:
    with pytest.raises(ApiError) as refused:
        json_object(body)
    assert refused.value.status == 400
    assert needle in refused.value.message


def test_a_real_request_passes_whole() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}'
    assert json_object(body)["messages"][0]["content"] == [{"type": "text"}]


def test_depth_counts_arrays_and_objects() -> None:
    assert depth(1) == 0
    assert depth({}) == 1
    assert depth({"a": [1, {"b": []}]}) == 4
    assert depth([[[[]]]]) == 4


def test_exactly_the_limit_is_accepted_and_one_more_refused() -> None:
    at_limit = b'{"x": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert depth(json_object(at_limit)) == MAX_DEPTH
    over = b'{"x": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    with pytest.raises(ApiError):
        json_object(over)
