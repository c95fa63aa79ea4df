"""Model versions and health thresholds in the config: records, checks, merging."""

from __future__ import annotations

import datetime as dt
from functools import partial
from textwrap import dedent
from typing import Any

import pytest
from pydantic import ValidationError
from test_config import issue_at

from modelpool.config import (
    Config,
    HealthSettings,
    ModelSpec,
    ThresholdSettings,
    VersionSpec,
    merged_thresholds,
    record_specs,
    version_spec,
)
from modelpool.config.schema import PLUGINS_KEY
from modelpool.config.versions import METADATA, OVERRIDABLE, PER_MODEL
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.monitor.health import Thresholds
from modelpool.plugins import PLUGINS

EXAMPLE = """\
models:
  smollm2:
    backend: llamacpp
    model_path: /m/smol.gguf
    defaults: {temperature: 0.2}
    version: v1                 # optional, default v1
    versions:
      v1: {author: ana, notes: first cut}          # the base's own entry: metadata only
      v2: {defaults: {temperature: 1.0}, n_ctx: 4096, author: bo, notes: warmer, created: 2026-11-01}
    thresholds: {critical_error_rate: 0.1}
health:
  window: 60s
  interval: 1s
  thresholds: {warning_error_rate: 0.05, critical_error_rate: 0.2, warning_p95: 2s, critical_p95: null, min_requests: 20}
"""  # noqa: E501


from_yaml = partial(Config.from_yaml, plugins=PLUGINS)
"""As ``bootstrap`` reads a config: backend options checked with the registered backends."""
checked_version = partial(version_spec, plugins=PLUGINS)


def issues_of(text: str, **kwargs: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        from_yaml(dedent(text), "pool.yaml", **kwargs)
    return caught.value.issues


def base_spec(**fields: Any) -> ModelSpec:
    spec = {"id": "smollm2", "backend": "llamacpp", "model_path": "/m/smol.gguf", **fields}
    return ModelSpec.model_validate(spec, context={PLUGINS_KEY: PLUGINS})


# --- the example and the records it makes ---------------------------------------------


def test_the_example_loads_with_versions_metadata_and_health() -> None:
    config = from_yaml(EXAMPLE, "pool.yaml")
    spec = config.models["smollm2"]
    assert (spec.version, spec.base_id) == ("v1", "smollm2")
    assert spec.versions["v1"] == VersionSpec(author="ana", notes="first cut")
    v2 = spec.versions["v2"]
    assert (v2.author, v2.notes, v2.created) == ("bo", "warmer", "2026-11-01")
    assert v2.overrides == {"defaults": {"temperature": 1.0}, "n_ctx": 4096}
    assert spec.thresholds is not None
    assert spec.thresholds.model_fields_set == {"critical_error_rate"}
    health = config.health
    assert (health.window, health.interval, health.max_operations) == (60.0, 1.0, 200)
    assert health.thresholds == ThresholdSettings(
        warning_error_rate=0.05, critical_error_rate=0.2, warning_p95=2.0, min_requests=20
    )


def test_record_specs_give_one_spec_per_version() -> None:
    spec = from_yaml(EXAMPLE).models["smollm2"]
    base, v2 = record_specs(spec)
    assert base is spec
    assert (v2.id, v2.base_id, v2.version) == ("smollm2@v2", "smollm2", "v2")
    assert v2.backend == "llamacpp"
    assert v2.options == {"model_path": "/m/smol.gguf", "n_ctx": 4096}
    assert v2.defaults == {"temperature": 1.0}
    assert (v2.versions, v2.aliases, v2.pinned) == ({}, (), False)
    assert v2.thresholds == spec.thresholds
    assert base.options == {"model_path": "/m/smol.gguf"}
    assert base.defaults == {"temperature": 0.2}


def test_a_spec_without_versions_is_its_only_record() -> None:
    spec = ModelSpec(id="a", backend="fake")
    assert record_specs(spec) == [spec]
    assert (spec.version, spec.versions, spec.thresholds, spec.base_id) == ("v1", {}, None, "a")


def test_options_and_defaults_merge_key_by_key_and_fields_are_inherited() -> None:
    spec = base_spec(
        n_ctx=2048,
        memory="300MB",
        device="cpu",
        tags=["chat"],
        pinned=True,
        aliases=["smol"],
        defaults={"temperature": 0.2, "max_tokens": 256},
        versions={"v2": {"options": {"n_ctx": 4096}, "defaults": {"temperature": 1.0}}},
    )
    v2 = record_specs(spec)[1]
    assert v2.options == {"model_path": "/m/smol.gguf", "n_ctx": 4096}
    assert v2.defaults == {"temperature": 1.0, "max_tokens": 256}
    assert (v2.memory, v2.device, v2.tags) == (300_000_000, "cpu", ("chat",))
    assert (v2.pinned, v2.aliases) == (False, ())  # the model's, kept by the base record


def test_a_version_on_another_backend_does_not_inherit_the_options() -> None:
    spec = base_spec(versions={"fake": {"backend": "fake", "load_seconds": 0.5}})
    record = record_specs(spec)[1]
    assert (record.id, record.backend) == ("smollm2@fake", "fake")
    assert record.options == {"load_seconds": 0.5}


def test_empty_versions_and_entries_mean_nothing_to_add() -> None:
    config = from_yaml("""\
models:
  a:
    backend: fake
    versions:
  b:
    backend: fake
    versions:
      v2:
""")
    assert config.models["a"].versions == {}
    assert config.models["b"].versions == {"v2": VersionSpec()}
    assert [record.id for record in record_specs(config.models["b"])] == ["b", "b@v2"]


def test_version_names_may_be_written_as_numbers() -> None:
    config = from_yaml("models:\n  a: {backend: fake, version: 1, versions: {2: {}}}\n")
    spec = config.models["a"]
    assert (spec.version, list(spec.versions)) == ("1", ["2"])
    assert [record.id for record in record_specs(spec)] == ["a", "a@2"]


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("2026-11-01", "2026-11-01"),
        ("2026-11-01 09:30:00", "2026-11-01T09:30:00"),
        ("'2026-11-01T09:30:00+02:00'", "2026-11-01T09:30:00+02:00"),
    ],
)
def test_created_is_stored_as_iso_8601(written: str, stored: str) -> None:
    config = from_yaml(
        f"models:\n  a: {{backend: fake, versions: {{v2: {{created: {written}}}}}}}\n"
    )
    assert config.models["a"].versions["v2"].created == stored
    assert VersionSpec(created=dt.date(2026, 11, 1)).created == "2026-11-01"


def test_created_must_be_a_date() -> None:
    issues = issues_of("""\
        models:
          a:
            backend: fake
            versions:
              v2: {created: last tuesday}
        """)
    issue = issue_at(issues, "models.a.versions.v2.created")
    assert "expected a date such as 2026-11-01" in issue.message
    assert issue.line == 5


def test_dumped_spec_validates_back_to_itself() -> None:
    spec = from_yaml(EXAMPLE).models["smollm2"]
    dumped = spec.model_dump()
    assert dumped["thresholds"] == {"critical_error_rate": 0.1}  # only the keys given
    assert dumped["versions"]["v2"]["overrides"]["n_ctx"] == 4096
    again = ModelSpec.model_validate(dumped)
    assert again == spec
    assert again.thresholds is not None
    assert again.thresholds.model_fields_set == {"critical_error_rate"}


def test_every_model_spec_field_is_either_per_version_or_per_model() -> None:
    assert set(OVERRIDABLE) | set(PER_MODEL) == set(ModelSpec.model_fields)
    assert not set(OVERRIDABLE) & set(PER_MODEL)
    assert not set(METADATA) & set(ModelSpec.model_fields)


# --- problems in a file -----------------------------------------------------------------


def test_bad_version_options_have_full_path_line_and_suggestion() -> None:
    issues = issues_of("""\
        models:
          smollm2:
            backend: llamacpp
            model_path: /m/smol.gguf
            priority: 500
            versions:
              v2:
                n_ctx: 8
                n_ctxx: 4096
                authr: bo
              v3:
                options:
                  n_gpu_layers: lots
        """)
    assert [(issue.path, issue.line) for issue in issues] == [
        ("models.smollm2.priority", 5),
        ("models.smollm2.versions.v2.n_ctx", 8),
        ("models.smollm2.versions.v2.n_ctxx", 9),
        ("models.smollm2.versions.v2.authr", 10),
        ("models.smollm2.versions.v3.n_gpu_layers", 13),
    ]
    assert "greater than or equal to 16, got 8" in issues[1].message
    assert issues[2].message == "unknown key for backend 'llamacpp' (did you mean 'n_ctx'?)"
    assert issues[3].message == "unknown key for backend 'llamacpp' (did you mean 'author'?)"
    assert "got 'lots'" in issues[4].message
    assert all(issue.source == "pool.yaml" for issue in issues)


def test_a_problem_of_the_base_is_not_repeated_for_each_version() -> None:
    issues = issues_of("""\
        models:
          a:
            backend: fake
            memory: lots
            load_seconds: -1
            versions:
              v2: {priority: 3}
              v3: {memory: 1GB, load_seconds: 0}
        """)
    assert {issue.path for issue in issues} == {"models.a.memory", "models.a.load_seconds"}


def test_a_version_needs_the_options_its_own_backend_requires() -> None:
    issues = issues_of("""\
        models:
          a:
            backend: fake
            versions:
              srv: {backend: process, health: /ready}
              bad: {backend: nope}
        """)
    missing = issue_at(issues, "models.a.versions.srv.command")
    assert (missing.message, missing.line) == ("required key is missing", 5)
    assert "unknown backend 'nope'" in issue_at(issues, "models.a.versions.bad.backend").message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", "other"),
        ("aliases", "[x]"),
        ("version", "v9"),
        ("versions", "{}"),
        ("pinned", "true"),
        ("thresholds", "{min_requests: 1}"),
    ],
)
def test_per_model_keys_cannot_differ_per_version(key: str, value: str) -> None:
    issues = issues_of(f"""\
        models:
          a:
            backend: fake
            versions:
              v2:
                {key}: {value}
        """)
    issue = issue_at(issues, f"models.a.versions.v2.{key}")
    assert issue.message == f"{key!r} cannot differ per version; set it on the model itself"
    assert issue.line == 6


def test_the_base_versions_entry_carries_metadata_only() -> None:
    issues = issues_of("""\
        models:
          a:
            backend: fake
            version: stable
            versions:
              stable: {author: ana, load_seconds: 1, memory: 1GB}
              v1: {load_seconds: 2}
        """)
    assert [issue.path for issue in issues] == [
        "models.a.versions.stable.load_seconds",
        "models.a.versions.stable.memory",
    ]
    message = issues[0].message
    assert "'stable' is the model's base version" in message
    assert "the base version's settings are the model's own; change them there" in message


@pytest.mark.parametrize("bad", ["v@2", "a/b", "a b", ".v2", "-v", "x" * 65, "v2\n"])
def test_version_names_reject_at_signs_paths_and_blanks(bad: str) -> None:
    with pytest.raises(ValidationError, match="expected a version name"):
        ModelSpec(id="a", backend="fake", version=bad)
    with pytest.raises(ValidationError, match="expected a version name"):
        ModelSpec(id="a", backend="fake", versions={bad: {}})


def test_bad_version_name_in_a_file_is_reported_at_it() -> None:
    issues = issues_of("""\
        models:
          a:
            backend: fake
            version: a/b
            versions:
              ok: {}
              "v@2": {}
        """)
    assert "no '@', '/' or spaces" in issue_at(issues, "models.a.version").message
    assert issue_at(issues, "models.a.version").line == 4
    assert "'v@2'" in issue_at(issues, "models.a.versions.v@2").message
    assert issue_at(issues, "models.a.versions.v@2").line == 7


def test_version_problems_come_with_the_files_other_problems() -> None:
    issues = issues_of("""\
        server: {port: 0}
        models:
          a:
            backend: fake
            versions:
              v2: {load_seconds: -1}
        """)
    assert [issue.path for issue in issues] == ["server.port", "models.a.versions.v2.load_seconds"]


def test_a_versions_device_needs_a_budget() -> None:
    issues = issues_of("""\
        pool: {budgets: {cpu: 8GB}}
        models:
          a:
            backend: fake
            device: cpu
            versions:
              gpu: {device: "cuda:0"}
              same: {memory: 1GB}
        """)
    assert [(issue.path, issue.line) for issue in issues] == [("models.a.versions.gpu.device", 7)]
    assert "no budget for device 'cuda:0'" in issues[0].message


def test_a_spec_built_in_python_checks_its_versions() -> None:
    spec = {"id": "a", "backend": "fake", "versions": {"v2": {"load_secs": 1}}}
    with pytest.raises(ValidationError, match=r"versions\.v2\.load_secs: unknown key"):
        ModelSpec.model_validate(spec, context={PLUGINS_KEY: PLUGINS})


def test_env_overrides_reach_a_versions_keys() -> None:
    environ = {"MODELPOOL_MODELS__SMOLLM2__VERSIONS__V2__N_CTX": "8192"}
    spec = from_yaml(EXAMPLE, environ=environ).models["smollm2"]
    assert record_specs(spec)[1].options["n_ctx"] == 8192
    issues = issues_of(EXAMPLE, environ={"MODELPOOL_MODELS__SMOLLM2__VERSIONS__V2__N_CTX": "1"})
    assert [(issue.source, issue.path) for issue in issues] == [
        ("MODELPOOL_MODELS__SMOLLM2__VERSIONS__V2__N_CTX", "models.smollm2.versions.v2.n_ctx")
    ]


# --- versions registered at run time ---------------------------------------------------


def test_version_spec_at_run_time_from_a_mapping() -> None:
    base = from_yaml(EXAMPLE).models["smollm2"]
    spec = checked_version(base, "v3", {"n_gpu_layers": -1, "author": "cy", "notes": None})
    assert (spec.id, spec.version, spec.base_id) == ("smollm2@v3", "v3", "smollm2")
    assert spec.options == {"model_path": "/m/smol.gguf", "n_gpu_layers": -1}
    assert spec.thresholds == base.thresholds
    same = checked_version(base, "v3", VersionSpec(overrides={"n_gpu_layers": -1}))
    assert same == spec


def test_version_spec_at_run_time_names_each_problem() -> None:
    base = from_yaml(EXAMPLE).models["smollm2"]
    entry = {"n_ctx": "big", "n_ctxx": 1, "pinned": True, "author": 7}
    with pytest.raises(ConfigError) as caught:
        checked_version(base, "v3", entry)
    issues = caught.value.issues
    assert {issue.path for issue in issues} == {
        "versions.v3.n_ctx",
        "versions.v3.n_ctxx",
        "versions.v3.pinned",
        "versions.v3.author",
    }
    assert all((issue.source, issue.line) == ("<request>", None) for issue in issues)
    assert "did you mean 'n_ctx'?" in issue_at(issues, "versions.v3.n_ctxx").message
    assert "cannot differ per version" in issue_at(issues, "versions.v3.pinned").message
    assert "versions.v3.n_ctx: expected a valid integer" in str(caught.value)


def test_version_spec_at_run_time_checks_the_name_and_the_base_entry() -> None:
    base = from_yaml(EXAMPLE).models["smollm2"]
    with pytest.raises(ConfigError) as caught:
        checked_version(base, "v@3", {}, source="state.json")
    [issue] = caught.value.issues
    assert (issue.source, issue.path) == ("state.json", "versions.v@3")
    assert "expected a version name" in issue.message
    with pytest.raises(ConfigError, match="the base version's settings are the model's own"):
        checked_version(base, "v1", {"n_ctx": 4096})
    with pytest.raises(ConfigError, match=r"versions\.v3: expected a mapping, got 3"):
        checked_version(base, "v3", 3)  # type: ignore[arg-type]


def test_version_spec_of_a_version_record_keeps_the_base_id() -> None:
    base = from_yaml(EXAMPLE).models["smollm2"]
    v2 = record_specs(base)[1]
    assert checked_version(v2, "v3", {}).id == "smollm2@v3"


# --- health and thresholds --------------------------------------------------------------


def test_health_defaults() -> None:
    health = from_yaml("").health
    assert health == HealthSettings()
    assert (health.window, health.interval, health.max_operations) == (60.0, 1.0, 200)
    assert merged_thresholds(health.thresholds, None) == {
        "warning_error_rate": 0.05,
        "critical_error_rate": 0.2,
        "warning_p95": None,
        "critical_p95": None,
        "min_requests": 20,
    }


def test_unknown_health_keys_have_suggestions_and_lines() -> None:
    issues = issues_of("""\
        health:
          windw: 5s
          thresholds: {critical_rate: 0.2}
        models:
          a: {backend: fake, thresholds: {min_request: 1}}
        heath: {}
        """)
    assert issue_at(issues, "health.windw").message == "unknown key (did you mean 'window'?)"
    assert issue_at(issues, "health.windw").line == 2
    assert issue_at(issues, "health.thresholds.critical_rate").message == (
        "unknown key (did you mean 'critical_error_rate'?)"
    )
    assert issue_at(issues, "models.a.thresholds.min_request").message == (
        "unknown key (did you mean 'min_requests'?)"
    )
    assert issue_at(issues, "heath").message == "unknown key (did you mean 'health'?)"


def test_health_values_are_checked() -> None:
    issues = issues_of("""\
        health:
          window: 0
          interval: soon
          max_operations: 0
          thresholds: {critical_error_rate: 1.5, min_requests: -1, warning_p95: -1s}
        """)
    assert "greater than 0" in issue_at(issues, "health.window").message
    assert "expected a duration" in issue_at(issues, "health.interval").message
    assert "greater than or equal to 1" in issue_at(issues, "health.max_operations").message
    rate = issue_at(issues, "health.thresholds.critical_error_rate")
    assert "less than or equal to 1" in rate.message
    assert (
        "greater than or equal to 0" in issue_at(issues, "health.thresholds.min_requests").message
    )
    assert "health.thresholds.warning_p95" in {issue.path for issue in issues}


def test_model_thresholds_replace_only_the_keys_they_give() -> None:
    config = from_yaml(EXAMPLE)
    spec = config.models["smollm2"]
    merged = merged_thresholds(config.health.thresholds, spec.thresholds)
    assert merged == {
        "warning_error_rate": 0.05,
        "critical_error_rate": 0.1,
        "warning_p95": 2.0,
        "critical_p95": None,
        "min_requests": 20,
    }
    assert Thresholds(**merged).critical_error_rate == 0.1  # the monitor's own keywords
    off = ThresholdSettings.model_validate({"warning_p95": None, "min_requests": 5})
    merged = merged_thresholds(config.health.thresholds, off)
    assert (merged["warning_p95"], merged["min_requests"]) == (None, 5)


def test_a_warning_threshold_above_its_critical_one_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"warning_error_rate 0\.5 is above critical"):
        ThresholdSettings(warning_error_rate=0.5, critical_error_rate=0.1)
    with pytest.raises(ValidationError, match=r"warning_p95 3\.0 is above critical_p95 2\.0"):
        ThresholdSettings(warning_p95="3s", critical_p95="2s")
    # Alone, a model's warning may be above the default critical that health replaces.
    assert ThresholdSettings(warning_error_rate=0.5).warning_error_rate == 0.5
    with pytest.raises(ValidationError, match=r"above critical_error_rate 0\.2 \(the default\)"):
        HealthSettings(thresholds={"warning_error_rate": 0.5})


def test_warning_above_critical_in_a_file_is_reported_at_the_key_given() -> None:
    # Both given: the pair is wrong in itself, reported at the mapping that holds it.
    issues = issues_of("""\
        health:
          thresholds:
            warning_p95: 2s
            critical_p95: 1s
        models:
          b:
            backend: fake
            thresholds: {critical_error_rate: 0.5, warning_error_rate: 0.4}
        """)
    [issue] = issues
    assert (issue.path, issue.line) == ("health.thresholds", 2)
    assert "warning_p95 2.0 is above critical_p95 1.0" in issue.message
    # One given: at that key, saying where the other one comes from.
    issues = issues_of("""\
        health:
          thresholds:
            warning_error_rate: 0.3
        """)
    [issue] = issues
    assert (issue.path, issue.line) == ("health.thresholds.warning_error_rate", 3)
    assert issue.message == (
        "warning_error_rate 0.3 is above critical_error_rate 0.2 (the default); "
        "warning must not exceed critical"
    )
    issues = issues_of("""\
        health:
          thresholds: {warning_error_rate: 0.1, critical_error_rate: 0.5}
        models:
          a:
            backend: fake
            thresholds:
              critical_error_rate: 0.01
        """)
    [issue] = issues
    assert (issue.path, issue.line) == ("models.a.thresholds.critical_error_rate", 7)
    assert "warning_error_rate 0.1 (from health) is above critical_error_rate 0.01" in (
        issue.message
    )
