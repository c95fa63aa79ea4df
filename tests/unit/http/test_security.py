"""The server's gate in front of a recording app: hosts, keys, body sizes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from modelpool.http.errors import ApiError
from modelpool.http.security import Guard


class RecordingApp:
    """Answers 200 with the body it read; remembers the paths that got through."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        body = b""
        try:
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        except ApiError as error:  # what the app's exception handler does in the server
            await error.response()(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def guarded(**options: Any) -> tuple[RecordingApp, httpx.AsyncClient]:
    app = RecordingApp()
    settings: dict[str, Any] = {
        "api_keys": [],
        "admin_keys": [],
        "allowed_hosts": [],
        "max_body": 1024,
        **options,
    }
    transport = httpx.ASGITransport(app=Guard(app, **settings))
    return app, httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


async def test_no_keys_configured_lets_everything_through() -> None:
    app, http = guarded()
    async with http:
        assert (await http.get("/v1/models")).status_code == 200
        assert (await http.get("/admin/status")).status_code == 200
    assert app.paths == ["/v1/models", "/admin/status"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer wrong"}, 401),
        ({"authorization": "Bearer k1x"}, 401),  # a longer key is not a match
        ({"authorization": "Basic k1"}, 401),
        ({"authorization": "Bearer k1"}, 200),
        ({"authorization": "bearer k2"}, 200),
        ({"x-api-key": "k2"}, 200),
    ],
)
async def test_api_keys(headers: dict[str, str], status: int) -> None:
    app, http = guarded(api_keys=["k1", "k2"])
    async with http:
        response = await http.get("/v1/models", headers=headers)
    assert response.status_code == status
    if status == 401:
        error = response.json()["error"]
        assert error["type"] == "authentication_error"
        assert "k1" not in error["message"]  # never echoes what it expected
        assert app.paths == []


async def test_health_and_the_dashboard_page_need_no_key() -> None:
    app, http = guarded(api_keys=["k1"])
    async with http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/ui")).status_code == 200
        assert (await http.get("/readyz")).status_code == 401
    assert app.paths == ["/healthz", "/ui"]


async def test_admin_keys_open_admin_routes_and_api_keys_do_not() -> None:
    _, http = guarded(api_keys=["user"], admin_keys=["boss"])
    user, boss = {"x-api-key": "user"}, {"x-api-key": "boss"}
    async with http:
        assert (await http.get("/admin/models", headers=user)).status_code == 401
        assert (await http.get("/metrics", headers=user)).status_code == 401
        assert (await http.get("/admin/models", headers=boss)).status_code == 200
        assert (await http.get("/metrics", headers=boss)).status_code == 200
        assert (await http.get("/v1/models", headers=user)).status_code == 200
        assert (await http.get("/v1/models", headers=boss)).status_code == 401


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8080", 200),
        ("localhost", 200),
        ("LOCALHOST:9", 200),
        ("[::1]:8080", 200),
        ("models.lan:8080", 200),  # listed in allowed_hosts
        ("evil.example", 421),
        ("127.0.0.1.evil.example", 421),
        ("", 421),
    ],
)
async def test_host_header_on_loopback(host: str, status: int) -> None:
    _, http = guarded(allowed_hosts=["models.lan"])
    async with http:
        response = await http.get("/v1/models", headers={"host": host})
    assert response.status_code == status


async def test_any_host_when_bound_beyond_loopback() -> None:
    _, http = guarded(allowed_hosts=None)
    async with http:
        response = await http.get("/v1/models", headers={"host": "gpu-box.example"})
    assert response.status_code == 200


async def test_bodies_over_the_limit_get_413_with_or_without_a_length() -> None:
    app, http = guarded(max_body=1024)

    async def chunked(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // 256):
            yield b"x" * 256

    async with http:
        declared = await http.post("/v1/embeddings", content=b"x" * 1025)
        streamed = await http.post("/v1/embeddings", content=chunked(2048))
        fits = await http.post("/v1/embeddings", content=chunked(1024))
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"
    assert app.paths.count("/v1/embeddings") == 2  # the declared one never reached the app
    assert streamed.status_code == 413
    assert fits.status_code == 200
    assert len(fits.content) == 1024
