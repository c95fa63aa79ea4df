"""``server.tls`` and the audit settings in a config file: files that must exist, a
certificate and key that must belong together, each problem with its file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from modelpool.config import Config
from modelpool.errors import ConfigError, ConfigIssue


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pems")
    authority = trustme.CA()
    issued = authority.issue_cert("localhost")
    other = authority.issue_cert("elsewhere")
    paths = {name: folder / f"{name}.pem" for name in ("cert", "key", "other_key", "locked")}
    issued.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    issued.private_key_pem.write_to_path(str(paths["key"]))
    other.private_key_pem.write_to_path(str(paths["other_key"]))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    paths["locked"].write_bytes(locked)
    return paths


def load(tmp_path: Path, server: str) -> Config:
    path = tmp_path / "modelpool.yaml"
    path.write_text(f"pool: {{budgets: {{cpu: 1GB}}}}\nserver:\n{server}")
    return Config.load(path, environ={})


def only_issue(tmp_path: Path, server: str) -> ConfigIssue:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, server)
    (issue,) = error.value.issues
    assert issue.source == str(tmp_path / "modelpool.yaml")
    return issue


def test_tls_with_a_certificate_and_its_key_loads(tmp_path: Path, pems: dict[str, Path]) -> None:
    config = load(tmp_path, f"  tls:\n    cert: {pems['cert']}\n    key: {pems['key']}\n")
    assert config.server.tls is not None
    assert config.server.tls.cert_path == str(pems["cert"])
    assert load(tmp_path, "  port: 8443\n").server.tls is None


def test_a_missing_file_is_named_with_its_line_and_key(
    tmp_path: Path, pems: dict[str, Path]
) -> None:
    issue = only_issue(tmp_path, f"  tls:\n    cert: {pems['cert']}\n    key: /no/such.key\n")
    assert (issue.path, issue.line) == ("server.tls.key", 5)
    assert "'/no/such.key': no file there" in issue.message
    folder = only_issue(tmp_path, f"  tls:\n    cert: {tmp_path}\n    key: {pems['key']}\n")
    assert (folder.path, folder.line) == ("server.tls.cert", 4)
    assert "a folder, not a file" in folder.message


def test_a_key_of_another_certificate_is_refused(tmp_path: Path, pems: dict[str, Path]) -> None:
    server = f"  tls:\n    cert: {pems['cert']}\n    key: {pems['other_key']}\n"
    issue = only_issue(tmp_path, server)
    assert issue.path == "server.tls"
    assert issue.line == 3
    assert issue.message.endswith("together: the key is not this certificate's")
    pem_swapped = only_issue(
        tmp_path, f"  tls:\n    cert: {pems['key']}\n    key: {pems['cert']}\n"
    )
    assert "expected PEM files" in pem_swapped.message


def test_an_encrypted_key_is_refused_without_asking_for_a_password(
    tmp_path: Path, pems: dict[str, Path]
) -> None:
    issue = only_issue(tmp_path, f"  tls:\n    cert: {pems['cert']}\n    key: {pems['locked']}\n")
    assert issue.path == "server.tls"
    assert issue.message.endswith("the key is encrypted; give the server an unencrypted copy")


def test_tls_needs_both_files_and_no_other_keys(tmp_path: Path, pems: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, f"  tls:\n    cert: {pems['cert']}\n    ky: {pems['key']}\n")
    paths = {issue.path: issue.message for issue in error.value.issues}
    assert paths.keys() == {"server.tls.key", "server.tls.ky"}
    assert "key" in paths["server.tls.ky"]  # did you mean 'key'?


def test_audit_settings_are_checked(tmp_path: Path) -> None:
    config = load(tmp_path, "  audit_max_bytes: 1MB\n  audit_keep: 2\n")
    assert (config.server.audit_max_bytes, config.server.audit_keep) == (1000**2, 2)
    issue = only_issue(tmp_path, "  audit_max_bytes: 10\n")
    assert issue.path == "server.audit_max_bytes"
