"""The pool's settings are the config's ``pool`` section: one object, one place per knob."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelpool import Config, ModelPool, ModelSpec
from modelpool.config import PoolSettings
from modelpool.policies import LRUPolicy

GB = 10**9
MODELS = [ModelSpec(id="a", backend="fake", memory=GB, device="cpu")]


def test_keywords_replace_the_defaults_checked_as_the_config_checks_them() -> None:
    pool = ModelPool(MODELS, budgets={"cpu": "4GB"}, strategy="lru", warm_budget="1GB", max_queue=3)
    assert pool.settings.budgets == {"cpu": 4 * GB}
    assert pool.settings.warm_budget == GB
    assert pool.settings.max_queue == 3
    assert pool.settings.strategy == "lru"
    assert pool.get_resource_status()["strategy"] == "lru"
    with pytest.raises(ValidationError, match="max_queue"):
        ModelPool(MODELS, budgets={"cpu": "4GB"}, max_queue=0)


def test_an_unknown_keyword_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="max_qeue"):
        ModelPool(MODELS, budgets={"cpu": "4GB"}, max_qeue=3)


def test_a_policy_object_is_used_as_given() -> None:
    policy = LRUPolicy()
    pool = ModelPool(MODELS, budgets={"cpu": "4GB"}, strategy=policy)
    assert pool.settings.strategy == "hybrid"  # the settings' name is not what decides
    assert pool.get_resource_status()["strategy"] == policy.name


def test_from_config_hands_the_pool_section_over_whole() -> None:
    config = Config.from_mapping(
        {"pool": {"budgets": {"cpu": "4GB"}, "starvation_limit": 3, "strategy": "lfu"}}
    )
    pool = ModelPool.from_config(config, state_dir=None, estimates=None)
    assert pool.settings is config.pool
    overridden = ModelPool.from_config(config, state_dir=None, estimates=None, max_failures=2)
    assert overridden.settings.max_failures == 2
    assert overridden.settings.starvation_limit == 3


def test_changed_ignores_nones_and_keeps_the_rest() -> None:
    settings = PoolSettings(budgets={"cpu": GB}, max_queue=7)
    assert settings.changed(budgets=None) is settings
    changed = settings.changed(warm_budget="2GB")
    assert (changed.warm_budget, changed.max_queue, changed.budgets) == (2 * GB, 7, {"cpu": GB})
    with pytest.raises(TypeError, match="nope"):
        settings.changed(nope=1)
