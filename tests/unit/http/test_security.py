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

    json = {"content-type": "application/json"}
    async with http:
        declared = await http.post("/v1/embeddings", content=b"x" * 1025, headers=json)
        streamed = await http.post("/v1/embeddings", content=chunked(2048), headers=json)
        fits = await http.post("/v1/embeddings", content=chunked(1024), headers=json)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"
    assert app.paths.count("/v1/embeddings") == 2  # the declared one never reached the app
    assert streamed.status_code == 413
    assert fits.status_code == 200
    assert len(fits.content) == 1024


async def test_every_host_header_is_judged_not_only_the_last() -> None:
    _, http = guarded()
    async with http:
        twice = [("host", "evil.example"), ("host", "127.0.0.1:8080")]
        assert (await http.get("/v1/models", headers=twice)).status_code == 421
        reversed_twice = [("host", "127.0.0.1:8080"), ("host", "evil.example")]
        assert (await http.get("/v1/models", headers=reversed_twice)).status_code == 421
        both_fine = [("host", "localhost"), ("host", "127.0.0.1:8080")]
        assert (await http.get("/v1/models", headers=both_fine)).status_code == 200


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://127.0.0.1:8080", 200),  # the server's own page (the dashboard)
        ("http://127.0.0.1:8080/", 200),
        ("https://app.example", 200),  # listed in allowed_origins
        ("https://APP.example", 200),
        ("http://localhost:8080", 403),  # another origin than the Host asked for
        ("http://127.0.0.1:9999", 403),  # another port is another site
        ("https://evil.example", 403),
        ("null", 403),  # a sandboxed frame or a file on disk
    ],
)
async def test_browser_origins(origin: str, status: int) -> None:
    app, http = guarded(allowed_origins=["https://app.example"])
    async with http:
        response = await http.post(
            "/admin/models/a/load", headers={"origin": origin, "host": "127.0.0.1:8080"}
        )
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "origin_not_allowed"
        assert app.paths == []


@pytest.mark.parametrize(
    ("method", "headers", "body", "status"),
    [
        ("POST", {"content-type": "text/plain"}, b'{"model": "a"}', 415),
        ("POST", {"content-type": "application/x-www-form-urlencoded"}, b"model=a", 415),
        ("POST", {"content-type": "multipart/form-data; boundary=x"}, b"--x--", 415),
        ("POST", {}, b'{"model": "a"}', 415),  # a body with no type
        ("PUT", {"content-type": "text/plain"}, b"{}", 415),
        ("DELETE", {"content-type": "text/plain"}, b"", 415),
        ("POST", {"content-type": "application/json"}, b'{"model": "a"}', 200),
        ("POST", {"content-type": "Application/JSON; charset=utf-8"}, b"{}", 200),
        ("POST", {}, b"", 200),  # ``curl -X POST .../load``: nothing to forge
        ("GET", {"content-type": "text/plain"}, b"", 200),  # reads change nothing
    ],
)
async def test_bodies_that_change_state_must_be_json(
    method: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    app, http = guarded()
    async with http:
        response = await http.request(method, "/admin/models/a/load", headers=headers, content=body)
    assert response.status_code == status
    if status == 415:
        error = response.json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert "application/json" in error["message"]
        assert app.paths == []


async def test_api_keys_are_case_sensitive() -> None:
    _, http = guarded(api_keys=["Key-ABC"])
    async with http:
        exact = await http.get("/v1/models", headers={"authorization": "Bearer Key-ABC"})
        lower = await http.get("/v1/models", headers={"authorization": "Bearer key-abc"})
        upper = await http.get("/v1/models", headers={"x-api-key": "KEY-ABC"})
    assert exact.status_code == 200
    assert lower.status_code == 401
    assert upper.status_code == 401


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP"])
async def test_compressed_bodies_are_refused_not_inflated(encoding: str) -> None:
    app, http = guarded()
    headers = {"content-type": "application/json", "content-encoding": encoding}
    async with http:
        response = await http.post("/v1/chat/completions", headers=headers, content=b"\x1f\x8b")
    assert response.status_code == 415
    assert encoding.lower() in response.json()["error"]["message"]
    assert app.paths == []
