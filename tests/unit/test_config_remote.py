"""``backend: remote`` and ``fallback:`` in a config: what is accepted, what is refused
with its path and line, and that a key never shows in a message."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from modelpool.config import Config
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.plugins import PLUGINS

KEY = "sk-live-9d8c7b6a5f4e3d2c"


def load_text(text: str, tmp_path: Path) -> Config:
    path = tmp_path / "pool.yaml"
    path.write_text(dedent(text))
    return Config.load(path, plugins=PLUGINS)


def issues(text: str, tmp_path: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_text(text, tmp_path)
    return caught.value.issues


def test_a_remote_model_keeps_the_reference_to_its_key_not_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAR_KEY", KEY)
    config = load_text(
        """
        models:
          far:
            backend: remote
            url: https://llm.example.com/v1/
            api_key: ${FAR_KEY}
            model: Qwen/Qwen2.5-7B-Instruct
            timeouts: {connect: 5s, read: 2m}
        """,
        tmp_path,
    )
    far = config.models["far"]
    assert far.remote
    assert far.options["api_key"] == "${FAR_KEY}"
    assert KEY not in repr(config)
    assert KEY not in far.model_dump_json()


def test_a_remote_model_may_not_book_memory_or_a_device(tmp_path: Path) -> None:
    found = issues(
        """
        pool: {budgets: {cpu: 4GB}}
        models:
          far: {backend: remote, url: "http://10.0.0.5:8000/v1", memory: 4GB, device: cpu}
        """,
        tmp_path,
    )
    assert len(found) == 1
    assert found[0].path == "models.far"
    assert "memory, device given for a remote model" in found[0].message
    assert found[0].line == 4


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (f"api_key: {KEY}", "api_key must name an environment variable as ${NAME}"),
        (f'url: "https://me:{KEY}@llm.example.com/v1"', "the URL holds credentials"),
        ('url: "ftp://llm.example.com/v1"', "expected an http:// or https:// URL"),
        ('api_key: "${NOT_SET_ANYWHERE_7}"', "${NOT_SET_ANYWHERE_7} is not set in the environment"),
    ],
)
def test_remote_options_are_refused_without_repeating_a_secret(
    given: str, expected: str, tmp_path: Path
) -> None:
    url = "" if given.startswith("url:") else 'url: "http://10.0.0.5:8000/v1", '
    text = f"""
        models:
          far: {{backend: remote, {url}{given}}}
        """
    found = issues(text, tmp_path)
    assert len(found) == 1, found
    assert expected in found[0].message
    assert KEY not in str(found[0])
    assert found[0].line is not None


def test_a_fallback_names_a_model_by_id_or_alias(tmp_path: Path) -> None:
    config = load_text(
        """
        models:
          far: {backend: remote, url: "http://10.0.0.5:8000/v1", aliases: [cloud]}
          local: {backend: fake, memory: 1GB, fallback: cloud}
        """,
        tmp_path,
    )
    assert config.models["local"].fallback == "cloud"


def test_a_fallback_that_is_unknown_itself_or_a_chain_is_refused(tmp_path: Path) -> None:
    found = issues(
        """
        models:
          a: {backend: fake, memory: 1GB, fallback: nope}
          b: {backend: fake, memory: 1GB, fallback: b}
          c: {backend: fake, memory: 1GB, fallback: d}
          d: {backend: fake, memory: 1GB, fallback: a}
        """,
        tmp_path,
    )
    by_path = {issue.path: issue.message for issue in found}
    assert by_path["models.a.fallback"].startswith("no model 'nope' to fall back to")
    assert "cannot be its own fallback" in by_path["models.b.fallback"]
    assert "fallbacks are one hop" in by_path["models.c.fallback"]
    assert "fallbacks are one hop" in by_path["models.d.fallback"]
    assert all(issue.line is not None for issue in found)
