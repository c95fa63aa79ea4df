"""Fuzzing the config loader: whatever the text, a Config or a ConfigError, never a crash.

A config is usually written by hand and the first run is the one that meets its
mistakes; every refusal must be a ``ConfigError`` whose issues name a place, never a
``KeyError`` or ``TypeError`` from deep inside validation.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelpool.config import Config
from modelpool.errors import ConfigError
from modelpool.plugins import PLUGINS

KEYS = [
    "server", "pool", "models", "health", "host", "port", "api_keys", "budgets", "strategy",
    "strategy_options", "warm_budget", "backend", "memory", "device", "priority", "pinned",
    "ttl", "group", "tags", "aliases", "versions", "version", "thresholds", "defaults",
    "command", "model_path", "options", "cpu", "cuda:0", "auto", "fake", "process",
    "llamacpp", "torch", "id", "v2", "a", "b", "error_rate", "min_requests",
]  # fmt: skip
"""Real key names (and some values) so that generated documents reach deep validation."""

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*KEYS, "6GB", "10m", "-1", "1e400", "${PORT}", "${NOPE}", "cuda:99", ""]),
    st.text(max_size=12),
)
documents: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), scalars), children, max_size=5),
    ),
    max_leaves=30,
)


def loads_or_refuses_cleanly(text: str) -> None:
    issues = []
    try:
        Config.from_yaml(text, "fuzz.yaml", plugins=PLUGINS)  # options checked too
    except ConfigError as error:
        issues = error.issues
        assert issues, "a ConfigError must list at least one issue"
    for issue in issues:
        assert issue.source == "fuzz.yaml"
        assert issue.message.strip()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_yaml_document_is_a_config_or_a_config_error(document: Any) -> None:
    try:
        text = yaml.safe_dump(document)
    except (yaml.YAMLError, ValueError, OverflowError):
        return  # not representable as YAML: nothing a person could write
    loads_or_refuses_cleanly(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_config_or_a_config_error(text: str) -> None:
    loads_or_refuses_cleanly(text)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "pool": st.fixed_dictionaries(
                {"budgets": st.dictionaries(st.sampled_from(KEYS), scalars)}
            )
        },
        optional={
            "models": st.dictionaries(
                st.sampled_from(KEYS),
                st.dictionaries(st.sampled_from(KEYS), documents, max_size=6),
                max_size=3,
            )
        },
    )
)
def test_model_sections_are_a_config_or_a_config_error(document: dict[str, Any]) -> None:
    try:
        text = yaml.safe_dump(document)
    except (yaml.YAMLError, ValueError, OverflowError):
        return
    loads_or_refuses_cleanly(text)


sizes = st.one_of(st.sampled_from(["1GB", "6GB", "0", "0.5GiB", "-1GB", "lots", 10**9]), scalars)
devices = st.one_of(st.sampled_from(["auto", "cpu", "cuda:0", "cuda:1", "tpu"]), scalars)
nearly_valid_models = st.fixed_dictionaries(
    {"backend": st.sampled_from(["fake", "process", "llamacpp", "nope"])},
    optional={
        "memory": sizes,
        "device": devices,
        "priority": st.integers(-5, 200),
        "ttl": st.one_of(st.sampled_from(["10m", 0, -1, "1h"]), scalars),
        "command": st.lists(st.sampled_from(["srv", "--port", "${PORT}", "${NOPE}", ""])),
        "model_path": st.sampled_from(["/no/such.gguf", "", "~/x"]),
        "versions": st.dictionaries(
            st.sampled_from(["v1", "v2", "v3", 2]),
            st.dictionaries(st.sampled_from(["memory", "device", "notes", "n_ctx"]), sizes),
            max_size=3,
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["cpu", "cuda:0", "auto"]), sizes, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), nearly_valid_models, max_size=3),
)
def test_nearly_valid_configs_are_a_config_or_a_config_error(
    budgets: dict[str, Any], models: dict[str, Any]
) -> None:
    try:
        text = yaml.safe_dump({"pool": {"budgets": budgets}, "models": models})
    except (yaml.YAMLError, ValueError, OverflowError):
        return
    loads_or_refuses_cleanly(text)
