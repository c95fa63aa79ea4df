"""Config checks of models across devices (issue 17, point 2): ``devices`` only on a
backend that can spread a model (it has ``load_across``), only over devices that have
budgets, never more devices than budgets, and ``memory`` against its devices' budgets
together."""

from __future__ import annotations

from functools import partial
from textwrap import dedent

import pytest

from modelpool.config import Config
from modelpool.core.handle import Handle, Placement
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.plugins import PLUGINS, POLICIES, Plugins, Registry


class _Spans:
    """A backend that can load one model across devices."""

    async def load_across(self, spec: object, placement: Placement) -> Handle:
        raise NotImplementedError


class _OneDevice:
    """A backend that cannot."""


def _registry() -> Registry:
    registry = Registry(
        "backend",
        "modelpool.backends",
        {"missing-extra": "modelpool_no_such_module:Backend"},
        discover=lambda group: [],
    )
    registry.register("spans", _Spans)
    registry.register("one", _OneDevice)
    return registry


from_yaml = partial(Config.from_yaml, plugins=Plugins(backends=_registry(), policies=POLICIES))


def issues_of(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        from_yaml(dedent(text), "pool.yaml")
    return caught.value.issues


def test_devices_on_a_backend_that_cannot_span_them_is_an_error_at_the_key() -> None:
    issues = issues_of("""\
        models:
          big: {backend: one, devices: 2}
          listed: {backend: one, devices: [cuda:0, cuda:1], split: [1, 3]}
          ok: {backend: spans, devices: 2, split: [1, 1]}
          single: {backend: one, devices: 1}
          versioned:
            backend: one
            versions:
              v2: {devices: 2}
        """)
    assert [(issue.path, issue.line) for issue in issues] == [
        ("models.big.devices", 2),
        ("models.listed.devices", 3),
        ("models.versioned.versions.v2.devices", 9),
    ]
    assert issues[0].message == (
        "backend 'one' cannot spread one model over several devices (it has no "
        "load_across); place the model on one device"
    )


def test_a_backend_whose_code_cannot_be_imported_is_not_judged() -> None:
    config = from_yaml("models:\n  m: {backend: missing-extra, devices: 2}\n")
    assert config.models["m"].devices == 2


def test_without_plugins_only_names_are_checked() -> None:
    config = Config.from_yaml("models:\n  m: {backend: fake, devices: 2}\n")
    assert config.models["m"].devices == 2


def test_the_shipped_backends_that_span_devices() -> None:
    text = dedent("""\
        models:
          proc: {backend: process, command: [srv], devices: 2}
          fake: {backend: fake, devices: 2}
          plain: {backend: callable, factory: "json:loads", devices: 2}
        """)
    with pytest.raises(ConfigError) as caught:
        Config.from_yaml(text, "pool.yaml", plugins=PLUGINS)
    assert [issue.path for issue in caught.value.issues] == ["models.plain.devices"]


def test_a_model_too_big_for_one_device_needs_every_budget_together_when_it_spans() -> None:
    text = dedent("""\
        pool: {budgets: {"cuda:0": 8GB, "cuda:1": 8GB}}
        models:
          spread: {backend: fake, memory: 12GB}
          never: {backend: fake, memory: 17GB}
          plain: {backend: callable, factory: "json:loads", memory: 12GB}
        """)
    with pytest.raises(ConfigError) as caught:
        Config.from_yaml(text, "pool.yaml", plugins=PLUGINS)
    issues = {issue.path: issue.message for issue in caught.value.issues}
    assert set(issues) == {"models.never.memory", "models.plain.memory"}
    assert "more than every budget together" in issues["models.never.memory"]
    assert "more than the largest budget" in issues["models.plain.memory"]


def test_listed_devices_need_budgets() -> None:
    issues = issues_of("""\
        pool: {budgets: {cuda:0: 24GB, cuda:1: 24GB}}
        models:
          m: {backend: spans, devices: [cuda:0, cuda:5]}
          fine: {backend: spans, devices: [cuda:1, cuda:0]}
          versioned:
            backend: spans
            versions:
              v2: {devices: [cuda:7, cuda:0]}
        """)
    assert [(issue.path, issue.line) for issue in issues] == [
        ("models.m.devices.1", 3),
        ("models.versioned.versions.v2.devices.0", 8),
    ]
    assert issues[0].message == (
        "no budget for device 'cuda:5' in pool.budgets (has: cuda:0, cuda:1); add one or "
        "list another device"
    )


def test_more_devices_than_budgets_could_never_load() -> None:
    issues = issues_of("""\
        pool: {budgets: {cuda:0: 24GB, cuda:1: 24GB}}
        models:
          three: {backend: spans, devices: 3}
          two: {backend: spans, devices: 2}
        """)
    assert [issue.path for issue in issues] == ["models.three.devices"]
    assert issues[0].message == (
        "the model spans 3 devices but pool.budgets has 2 (cuda:0, cuda:1): it could never "
        "load; lower devices or add budgets"
    )


def test_memory_is_set_against_its_devices_budgets_together() -> None:
    """A 40 GB model over two 24 GB GPUs fits; it is not "more than the largest budget"."""
    issues = issues_of("""\
        pool: {budgets: {cuda:0: 24GB, cuda:1: 24GB, cuda:2: 8GB}}
        models:
          fits: {backend: spans, devices: 2, memory: 40GB}
          listed: {backend: spans, devices: [cuda:0, cuda:2], memory: 40GB}
          over: {backend: spans, devices: 2, memory: 49GB}
        """)
    assert [issue.path for issue in issues] == ["models.listed.memory", "models.over.memory"]
    assert "the budgets of cuda:0 + cuda:2 together (29.8 GiB)" in issues[0].message
    assert "the budgets of cuda:0 + cuda:1 together (44.7 GiB)" in issues[1].message
