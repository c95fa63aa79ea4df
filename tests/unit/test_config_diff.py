"""``diff_configs``: what a reload changes, sorted by how it can be applied."""

from __future__ import annotations

from typing import Any

from modelpool.config import Config
from modelpool.config.diff import diff_configs

GB = 1024**3
BASE: dict[str, Any] = {
    "server": {"port": 8080},
    "pool": {"strategy": "lru", "budgets": {"cpu": "8GiB", "cuda:0": "16GiB"}},
    "models": {
        "chat": {"backend": "fake", "memory": "2GiB", "device": "cpu", "tags": ["chat"]},
        "coder": {"backend": "fake", "memory": "3GiB", "device": "cpu", "ttl": 60},
    },
}


def config(**changes: Any) -> Config:
    """BASE with sections replaced (``models`` given whole, others merged)."""
    data = {**BASE}
    for section, value in changes.items():
        data[section] = value if section == "models" else {**BASE.get(section, {}), **value}
    return Config.from_mapping(data)


def models(**changes: dict[str, Any] | None) -> dict[str, Any]:
    """BASE's models with some changed (merged), added, or removed (None)."""
    found = {key: dict(value) for key, value in BASE["models"].items()}
    for key, value in changes.items():
        if value is None:
            del found[key]
        else:
            found[key] = {**found.get(key, {}), **value}
    return found


def test_the_same_config_changes_nothing() -> None:
    diff = diff_configs(config(), config())
    assert diff.empty
    assert diff.summary() == {
        "added": [],
        "removed": [],
        "reloaded": {},
        "updated": {},
        "settings": {},
        "needs_restart": [],
    }


def test_models_added_and_removed() -> None:
    new = models(coder=None, embed={"backend": "fake", "memory": "1GiB", "device": "cpu"})
    diff = diff_configs(config(), config(models=new))
    assert [spec.id for spec in diff.added] == ["embed"]
    assert diff.removed == ("coder",)
    assert not diff.reloaded
    assert not diff.updated
    assert list(diff.running.models) == ["chat", "embed"]


def test_options_memory_or_device_need_a_reload() -> None:
    new = models(
        chat={"memory": "3GiB"},
        coder={"some_option": 7, "device": "cuda:0"},
    )
    diff = diff_configs(config(), config(models=new))
    assert {c.model_id: c.fields for c in diff.reloaded} == {
        "chat": ("memory",),
        "coder": ("options", "device"),
    }
    assert not diff.updated


def test_metadata_changes_apply_in_place() -> None:
    new = models(
        chat={"tags": ["chat", "general"], "aliases": ["talk"], "priority": 1},
        coder={"ttl": 120, "defaults": {"temperature": 0.1}, "pinned": True},
    )
    diff = diff_configs(config(), config(models=new))
    assert not diff.reloaded
    assert {c.model_id: c.fields for c in diff.updated} == {
        "chat": ("priority", "tags", "aliases"),
        "coder": ("pinned", "ttl", "defaults"),
    }


def test_a_reload_with_metadata_too_applies_the_metadata_first() -> None:
    new = models(chat={"memory": "3GiB", "aliases": ["talk"]})
    (change,) = diff_configs(config(), config(models=new)).reloaded
    assert change.fields == ("memory", "aliases")
    now = change.metadata_now
    assert now.aliases == ("talk",)
    assert now.memory == 2 * GB  # the memory waits for the model to unload


def test_a_field_nobody_classified_needs_a_reload() -> None:
    new = models(chat={"group": "big"})
    diff = diff_configs(config(), config(models=new))
    assert [c.model_id for c in diff.reloaded] == ["chat"]


def test_pool_settings_live_and_those_needing_a_restart() -> None:
    pool = {
        "strategy": "lfu",
        "budgets": {"cpu": "6GiB", "cuda:1": "8GiB"},  # cuda:0 gone, cuda:1 new
        "max_models": 2,
        "probe": "static",
        "wait_timeout": 30,
    }
    diff = diff_configs(config(), config(pool=pool))
    assert diff.settings["strategy"] == ("lru", "lfu")
    assert diff.settings["max_models"] == (None, 2)
    assert diff.settings["wait_timeout"] == (300.0, 30.0)
    assert diff.settings["budgets"] == (
        {"cpu": 8 * GB, "cuda:0": 16 * GB},
        {"cpu": 6 * GB, "cuda:0": 16 * GB},
    )
    assert set(diff.needs_restart) == {"pool.budgets.cuda:0", "pool.budgets.cuda:1", "pool.probe"}
    running = diff.pool_settings
    assert running.budgets == {"cpu": 6 * GB, "cuda:0": 16 * GB}
    assert running.probe == "auto"  # left as it runs
    assert running.strategy == "lfu"


def test_turning_auto_on_needs_a_restart() -> None:
    diff = diff_configs(config(), config(pool={"strategy": "auto"}))
    assert diff.needs_restart == ("pool.strategy",)
    assert "strategy" not in diff.settings
    assert diff.pool_settings.strategy == "lru"


def test_server_changes_need_a_restart_and_are_reported_again_until_then() -> None:
    new = config(server={"port": 9000, "host": "0.0.0.0", "api_keys": ["k"]})
    first = diff_configs(config(), new)
    assert first.needs_restart == ("server.host", "server.port", "server.api_keys")
    assert first.empty
    assert first.running.server.port == 8080
    again = diff_configs(first.running, new)
    assert again.needs_restart == first.needs_restart


def test_models_with_versions_change_only_with_a_restart() -> None:
    versioned = {"backend": "fake", "memory": "1GiB", "device": "cpu", "versions": {"v2": {}}}
    diff = diff_configs(config(), config(models=models(tagged=versioned)))
    assert diff.needs_restart == ("models.tagged",)
    assert not diff.added
    assert "tagged" not in diff.running.models


def test_the_summary_is_plain_data() -> None:
    new = models(chat={"memory": "3GiB"}, coder=None)
    summary = diff_configs(
        config(), config(models=new, pool={"budgets": {"cpu": "4GiB", "cuda:0": "16GiB"}})
    )
    shown = summary.summary()
    assert shown["reloaded"] == {"chat": ["memory"]}
    assert shown["removed"] == ["coder"]
    assert shown["settings"]["budgets"]["new"] == {"cpu": 4 * GB, "cuda:0": 16 * GB}
    assert shown["needs_restart"] == []


def test_placement_is_live_and_the_group_scope_needs_a_restart() -> None:
    diff = diff_configs(config(), config(pool={"placement": "first_fit", "group_scope": "box"}))
    assert diff.settings == {"placement": ("cost", "first_fit")}
    assert diff.needs_restart == ("pool.group_scope",)
    assert diff.pool_settings.placement == "first_fit"
    assert diff.pool_settings.group_scope == "device"


def test_spreading_a_model_over_devices_reloads_it() -> None:
    new = models(coder={"device": "auto", "devices": 2})
    (change,) = diff_configs(config(), config(models=new)).reloaded
    assert change.fields == ("device", "devices")


def test_a_new_fallback_applies_in_place() -> None:
    new = models(chat={"fallback": "coder"})
    diff = diff_configs(config(), config(models=new))
    assert [(c.model_id, c.fields) for c in diff.updated] == [("chat", ("fallback",))]


def test_a_model_with_replicas_changes_by_a_restart_and_goes_whole() -> None:
    def yaml_config(models: str) -> Config:
        return Config.from_yaml("pool: {budgets: {cpu: 8GB}}\nmodels:\n" + models)

    running = yaml_config(
        "  chat: {backend: fake, memory: 1GB, replicas: 2}\n  gone: {backend: fake, replicas: 2}\n"
    )
    new = yaml_config("  chat: {backend: fake, memory: 2GB, replicas: 2}\n")
    diff = diff_configs(running, new)
    assert "models.chat.memory" in diff.needs_restart
    assert not diff.reloaded
    assert diff.removed == ("gone",)


def test_the_metadata_of_a_model_with_replicas_applies_in_place() -> None:
    def yaml_config(chat: str) -> Config:
        return Config.from_yaml("pool: {budgets: {cpu: 8GB}}\nmodels:\n  chat: " + chat + "\n")

    running = yaml_config("{backend: fake, memory: 1GB, replicas: 2}")
    new = yaml_config("{backend: fake, memory: 1GB, replicas: 2, ttl: 60, aliases: [talk]}")
    diff = diff_configs(running, new)
    assert [(c.model_id, set(c.fields)) for c in diff.updated] == [("chat", {"ttl", "aliases"})]
    assert not diff.needs_restart
    more = diff_configs(running, yaml_config("{backend: fake, memory: 1GB, replicas: 3, ttl: 60}"))
    assert set(more.needs_restart) == {"models.chat.replicas", "models.chat.ttl"}
    assert not more.updated
