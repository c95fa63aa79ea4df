"""The gate's key check is exact: case, length and every byte count; and its edges.

A recording app behind ``Guard``, driven through httpx's ASGI transport: no server,
no sleeps. Cases that the wider ``test_security.py`` does not pin down.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from modelpool.http.errors import ApiError
from modelpool.http.security import Guard

KEY = "Sk-MixedCase-42"
JSON = {"content-type": "application/json"}  # the gate takes no other body on a POST


class EchoApp:
    """Answers 200 with the body it read; counts the requests that got through."""

    def __init__(self) -> None:
        self.seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen += 1
        body = b""
        more = True
        try:
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = bool(message.get("more_body"))
        except ApiError as error:  # what the server's exception handler does
            await error.response()(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def gate(**options: Any) -> tuple[EchoApp, httpx.AsyncClient]:
    app = EchoApp()
    settings: dict[str, Any] = {
        "api_keys": [KEY],
        "admin_keys": [],
        "allowed_hosts": [],
        "max_body": 1024,
        **options,
    }
    transport = httpx.ASGITransport(app=Guard(app, **settings))
    return app, httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


@pytest.mark.parametrize(
    "presented",
    [
        KEY.lower(),
        KEY.upper(),
        KEY.swapcase(),
        KEY[:-1],  # a prefix
        KEY + " x",  # the key and more after a space
        f" {KEY}x",
    ],
)
@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
async def test_a_key_that_differs_in_case_or_length_is_refused(header: str, presented: str) -> None:
    app, http = gate()
    value = f"Bearer {presented}" if header == "authorization" else presented
    async with http:
        response = await http.get("/v1/models", headers={header: value})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Incorrect API key"
    assert app.seen == 0


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
async def test_the_exact_key_is_accepted_by_either_header(header: str) -> None:
    app, http = gate()
    value = f"Bearer {KEY}" if header == "authorization" else KEY
    async with http:
        response = await http.get("/v1/models", headers={header: value})
    assert response.status_code == 200
    assert app.seen == 1


async def test_admin_keys_are_exact_too() -> None:
    app, http = gate(admin_keys=["Boss-Key"])
    async with http:
        for key in ("boss-key", "BOSS-KEY", "Boss-Ke", "Boss-Keyy"):
            refused = await http.get("/admin/models", headers={"x-api-key": key})
            assert refused.status_code == 401, key
        allowed = await http.get("/admin/models", headers={"x-api-key": "Boss-Key"})
    assert allowed.status_code == 200
    assert app.seen == 1


async def test_any_of_several_keys_opens_the_gate_whatever_its_place() -> None:
    app, http = gate(api_keys=["first", "second", "third"])
    async with http:
        for key in ("first", "second", "third"):
            assert (await http.get("/v1/models", headers={"x-api-key": key})).status_code == 200
        assert (await http.get("/v1/models", headers={"x-api-key": "fourth"})).status_code == 401
    assert app.seen == 3


async def test_with_no_admin_keys_the_api_keys_open_the_admin_routes() -> None:
    _, http = gate(admin_keys=[])
    async with http:
        assert (await http.get("/admin/models", headers={"x-api-key": KEY})).status_code == 200
        assert (await http.get("/metrics")).status_code == 401


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "No API key given: send 'Authorization: Bearer <key>'"),
        ({"authorization": "Bearer "}, "No API key given: send 'Authorization: Bearer <key>'"),
        ({"authorization": "Bearer    "}, "No API key given: send 'Authorization: Bearer <key>'"),
        ({"authorization": KEY}, "No API key given: send 'Authorization: Bearer <key>'"),
        ({"x-api-key": ""}, "No API key given: send 'Authorization: Bearer <key>'"),
    ],
)
async def test_a_missing_key_is_told_how_to_send_one(headers: dict[str, str], message: str) -> None:
    _, http = gate()
    async with http:
        response = await http.get("/v1/models", headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["message"] == message
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "authentication_error"


async def test_a_bearer_key_is_taken_without_surrounding_spaces() -> None:
    _, http = gate()
    async with http:
        response = await http.get("/v1/models", headers={"authorization": f"BEARER  {KEY} "})
    assert response.status_code == 200


async def test_the_authorization_header_wins_over_x_api_key() -> None:
    _, http = gate()
    async with http:
        wrong_bearer = await http.get(
            "/v1/models", headers={"authorization": "Bearer wrong", "x-api-key": KEY}
        )
        other_scheme = await http.get(
            "/v1/models", headers={"authorization": "Basic abc", "x-api-key": KEY}
        )
    assert wrong_bearer.status_code == 401
    assert other_scheme.status_code == 200  # not a bearer key: the x-api-key is read


@pytest.mark.parametrize("path", ["/healthz", "/ui", "/ui/", "/favicon.ico"])
async def test_open_paths_need_no_key(path: str) -> None:
    _, http = gate()
    async with http:
        assert (await http.get(path)).status_code == 200


@pytest.mark.parametrize("path", ["/healthz/x", "/uix", "/readyz", "/admin", "/metrics"])
async def test_other_paths_need_a_key(path: str) -> None:
    _, http = gate()
    async with http:
        assert (await http.get(path)).status_code == 401


async def test_a_wrong_host_is_refused_before_the_key_is_looked_at() -> None:
    _, http = gate()
    async with http:
        response = await http.get("/healthz", headers={"host": "evil.example"})
    assert response.status_code == 421
    assert response.json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("::1", 200),  # a bare IPv6 loopback, no brackets
        ("[::1]", 200),
        ("[::1]:80", 200),
        ("localhost:", 200),
        (" localhost ", 200),
        ("LocalHost", 200),
        ("[::2]:80", 421),
        ("localhost.evil:80", 421),
        ("evil:localhost", 421),
    ],
)
async def test_host_names_are_read_without_port_case_or_spaces(host: str, status: int) -> None:
    _, http = gate(api_keys=[])
    async with http:
        response = await http.get("/v1/models", headers={"host": host})
    assert response.status_code == status


async def test_a_body_of_exactly_the_limit_passes_and_one_byte_more_does_not() -> None:
    app, http = gate(api_keys=[], max_body=1024)
    async with http:
        fits = await http.post("/v1/embeddings", content=b"x" * 1024, headers=JSON)
        over = await http.post("/v1/embeddings", content=b"x" * 1025, headers=JSON)
    assert fits.status_code == 200
    assert len(fits.content) == 1024
    assert over.status_code == 413
    assert over.json()["error"]["message"] == "Request body larger than 1024 bytes"
    assert app.seen == 1


async def test_a_streamed_body_of_exactly_the_limit_passes() -> None:
    _, http = gate(api_keys=[], max_body=1000)

    async def chunks(total: int, size: int = 100) -> Any:
        for start in range(0, total, size):
            yield b"y" * min(size, total - start)

    async with http:
        fits = await http.post("/v1/embeddings", content=chunks(1000), headers=JSON)
        over = await http.post("/v1/embeddings", content=chunks(1001), headers=JSON)
    assert fits.status_code == 200
    assert len(fits.content) == 1000
    assert over.status_code == 413


async def test_non_http_scopes_pass_through_untouched() -> None:
    received: list[Any] = []
    sent: list[Any] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope == {"type": "lifespan"}
        await send({"type": "lifespan.startup.complete", "seen": await receive()})

    async def receive() -> Any:
        received.append("startup")
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        sent.append(message)

    guard = Guard(inner, api_keys=[KEY], admin_keys=[], allowed_hosts=[], max_body=1)
    await guard({"type": "lifespan"}, receive, send)
    assert received == ["startup"]
    assert sent == [{"type": "lifespan.startup.complete", "seen": {"type": "lifespan.startup"}}]


async def test_a_bearer_credential_with_a_space_inside_is_a_wrong_key() -> None:
    _, http = gate()
    async with http:
        response = await http.get(
            "/v1/models", headers={"authorization": f"Bearer {KEY} extra", "x-api-key": KEY}
        )
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Incorrect API key"


async def test_a_streamed_body_over_the_limit_names_the_limit() -> None:
    _, http = gate(api_keys=[], max_body=100)

    async def chunks() -> Any:
        for _ in range(3):
            yield b"z" * 50

    async with http:
        over = await http.post("/v1/embeddings", content=chunks(), headers=JSON)
    assert over.status_code == 413
    assert over.json()["error"] == {
        "message": "Request body larger than 100 bytes",
        "type": over.json()["error"]["type"],
        "param": None,
        "code": "request_too_large",
    }


async def raw_request(guard: Guard, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """One GET straight through the ASGI interface: no client adds a Host header here."""
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": headers}
    await guard(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_a_request_without_a_host_header_is_refused() -> None:
    app = EchoApp()
    guard = Guard(app, api_keys=[], admin_keys=[], allowed_hosts=[], max_body=10)
    status, body = await raw_request(guard, [])
    assert status == 421
    assert json.loads(body)["error"]["message"] == "Host not allowed"
    assert app.seen == 0
    status, _ = await raw_request(guard, [(b"host", b"localhost")])
    assert (status, app.seen) == (200, 1)
