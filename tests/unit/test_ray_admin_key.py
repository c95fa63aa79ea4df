"""The ingress's own admin key check (``modelpool.ray.admin_key``; no Ray needed)."""

from __future__ import annotations

import json

from modelpool.ray.admin_key import refusal

KEYS = [b"admin-1", b"admin-2"]


def test_no_keys_set_lets_everyone_through() -> None:
    assert refusal([], []) is None


def test_any_of_the_keys_is_accepted_bearer_or_header() -> None:
    assert refusal([(b"authorization", b"Bearer admin-2")], KEYS) is None
    assert refusal([(b"x-api-key", b"admin-1")], KEYS) is None


def test_a_missing_or_wrong_key_is_a_401_in_openai_shape() -> None:
    for headers, says in (([], "No API key given"), ([(b"x-api-key", b"nope")], "Incorrect")):
        answer = refusal(headers, KEYS)
        assert answer is not None
        assert answer.status_code == 401
        error = json.loads(bytes(answer.body))["error"]
        assert error["code"] == "invalid_api_key"
        assert error["type"] == "authentication_error"
        assert error["message"].startswith(says)
