"""``modelpool serve`` over HTTPS with an API key, as a user runs it: the ``openai``
client and ``ServerClient`` verify a certificate made for the test (``trustme``), and
every admin and rollout operation lands in ``/admin/audit`` with the fingerprint of
the key that asked for it, never the key."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trustme
from server_process import Server, modelpool_cli, running_server, stop

from modelpool.client import ApiError, ClientError, ServerClient

KEY = "sk-audit-e2e-0123456789"
FINGERPRINT = hashlib.sha256(KEY.encode()).hexdigest()[:12]
TIMEOUT = 30.0
ONE: dict[str, Any] = {"backend": "fake", "memory": "1GB", "device": "cpu"}


@dataclass
class Running:
    server: Server
    ca: str
    """The CA's certificate (PEM) that signed the server's."""
    config: dict[str, Any]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    cert, key, ca = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca))
    config = {
        "server": {
            "api_keys": [KEY],
            "tls": {"cert": str(cert), "key": str(key)},
            "header_timeout": 1,
        },
        "pool": {"budgets": {"cpu": "8GB"}},
        "models": {"tiny": {**ONE, "versions": {"v2": {"author": "bo"}}}},
    }
    with running_server(config, api_key=KEY, ca_cert=str(ca)) as server:
        yield Running(server, str(ca), config)


def client(running: Running, key: str | None = KEY) -> ServerClient:
    return ServerClient(running.server.url, key, timeout=TIMEOUT, ca_cert=running.ca)


def test_the_openai_client_verifies_the_servers_certificate(running: Running) -> None:
    assert running.server.url.startswith("https://")
    assert f"serving on {running.server.url}" in running.server.log()
    trusting = httpx.Client(verify=ssl.create_default_context(cafile=running.ca))
    with openai.OpenAI(
        base_url=running.server.v1, api_key=KEY, max_retries=0, http_client=trusting
    ) as verified:
        assert "tiny" in [model.id for model in verified.models.list()]

    # Without the CA the certificate is not trusted, and plain HTTP is not answered.
    with (
        openai.OpenAI(base_url=running.server.v1, api_key=KEY, max_retries=0) as untrusting,
        pytest.raises(openai.APIConnectionError),
    ):
        untrusting.models.list()
    plain = running.server.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/healthz", timeout=5)


def test_operations_appear_in_the_audit_log_with_the_keys_fingerprint(running: Running) -> None:
    with client(running) as server:
        server.load("tiny")
        server.register_version("tiny", "v3", {"load_seconds": 0}, author="cy")
        operation = server.start_rollout("tiny", "v2", "immediate")
        deadline = time.monotonic() + TIMEOUT
        while server.rollout(operation["operation_id"])["status"] in ("pending", "running"):
            assert time.monotonic() < deadline, "the rollout did not end"
            time.sleep(0.05)  # polling the API as an operator would
        with pytest.raises(ApiError) as unknown:
            server.unload("nope")
        assert unknown.value.status == 404
        entries = server.audit(limit=10)
        raw = httpx.get(
            f"{running.server.url}/admin/audit",
            headers={"authorization": f"Bearer {KEY}"},
            verify=ssl.create_default_context(cafile=running.ca),
            timeout=TIMEOUT,
        )

    newest = [(e["operation"], e["outcome"], e["status"]) for e in entries[:4]]
    assert newest == [
        ("unload", "error", 404),
        ("rollout", "ok", 202),
        ("register", "ok", 201),
        ("load", "ok", 200),
    ]
    unload, rollout, register, load = entries[:4]
    assert "unknown model 'nope'" in unload["error"]
    asked = {"model": "tiny", "version": "v2", "strategy": "immediate", "settings": {}}
    assert rollout["request"] == asked
    assert register["request"] == {
        "model": "tiny",
        "version": "v3",
        "settings": {"load_seconds": 0},
        "author": "cy",
    }
    assert load["request"] == {"model": "tiny", "wait": "true"}
    for entry in entries[:4]:
        assert entry["caller"] == {"address": "127.0.0.1", "key": FINGERPRINT}
        assert entry["time"].endswith("Z")
    # The key itself is nowhere: not in the answer, not in the file.
    assert raw.status_code == 200
    assert KEY not in raw.text
    path = Path(raw.json()["path"])
    assert path.name == "audit.log"
    written = path.read_text()
    assert KEY not in written
    assert len(written.splitlines()) >= 4


def test_reading_routes_are_not_audited_and_keys_still_guard_the_log(running: Running) -> None:
    with client(running) as server:
        before = len(server.audit(limit=1000))
        server.status()
        server.models()
        assert len(server.audit(limit=1000)) == before
    with client(running, key=None) as anonymous, pytest.raises(ApiError) as refused:
        anonymous.audit()
    assert refused.value.status == 401


def test_the_cli_reads_the_audit_log_over_https_with_ssl_cert_file(running: Running) -> None:
    with client(running) as server:
        server.load("tiny")
    url, env = running.server.url, {"MODELPOOL_API_KEY": KEY}
    trusting = {**env, "SSL_CERT_FILE": running.ca}
    shown = modelpool_cli("audit", "--url", url, "--limit", "3", env=trusting)
    assert shown.returncode == 0, shown.stderr
    assert FINGERPRINT in shown.stdout
    assert "load" in shown.stdout

    as_json = modelpool_cli("audit", "--url", url, "--json", "--limit", "2", env=trusting)
    assert as_json.returncode == 0, as_json.stderr
    entries = json.loads(as_json.stdout)["entries"]
    assert len(entries) == 2
    assert entries[0]["caller"]["key"] == FINGERPRINT

    untrusted = modelpool_cli("audit", "--url", url, env=env)
    assert untrusted.returncode == 1
    assert "is not trusted" in untrusted.stderr
    assert "SSL_CERT_FILE" in untrusted.stderr


def test_a_client_without_the_ca_is_told_the_certificate_is_not_trusted(running: Running) -> None:
    with ServerClient(running.server.url, KEY) as server, pytest.raises(ClientError) as error:
        server.status()
    assert "not trusted" in str(error.value)
    with pytest.raises(ValueError, match="cannot use the CA certificate"):
        ServerClient(running.server.url, KEY, ca_cert="/no/such/ca.pem")


def test_a_tls_connection_that_sends_no_request_is_closed_by_the_header_timeout(
    running: Running,
) -> None:
    """The connection limits of the server's protocol class work under TLS too."""
    port = int(running.server.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=running.ca)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        started = time.monotonic()
        answer = b""
        with contextlib.suppress(ssl.SSLEOFError):  # closed without TLS's goodbye
            while chunk := tls.recv(4096):  # the server closes after its answer
                answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request_timeout" in answer
    assert 0.5 < waited < 8


def test_an_idle_keep_alive_tls_connection_does_not_hold_up_shutdown(running: Running) -> None:
    """A TLS close waits for the client's goodbye (up to 30 s in asyncio); an idle client
    never reads to send it, so the server must not wait for one when it stops."""
    with running_server(running.config, api_key=KEY, ca_cert=running.ca) as server:
        verify = ssl.create_default_context(cafile=running.ca)
        headers = {"authorization": f"Bearer {KEY}"}
        with httpx.Client(verify=verify, headers=headers) as idle:
            assert idle.get(f"{server.url}/admin/status").status_code == 200
            started = time.monotonic()
            stop(server)  # SIGINT
            took = time.monotonic() - started
    assert took < 10, f"stopping took {took:.1f}s\n{server.log()}"
