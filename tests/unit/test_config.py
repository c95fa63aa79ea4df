"""Config: YAML and mappings in, a validated Config or a ConfigError listing every issue."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from modelpool.config import Config, ModelSpec, PoolSettings, default_state_dir
from modelpool.config.checks import PLUGINS_KEY
from modelpool.config.fields import ModelFile
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.plugins import POLICIES, Plugins, Registry
from modelpool.types import ModelSwitchingStrategy


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: ModelFile
    n_ctx: int = 2048


class _OptionedBackend:
    options_model = _Options


class _PlainBackend:
    """No ``options_model``: any extra keys are accepted as options."""


def private_backends() -> Registry:
    # A private registry keeps these tests independent of installed entry points and
    # keeps the test backends out of the process-wide one other tests may list.
    registry = Registry(
        "backend",
        "modelpool.backends",
        {
            "fake": "modelpool.backends.fake:FakeBackend",
            "broken": "modelpool_no_such_module:Backend",
        },
        discover=lambda group: [],
    )
    registry.register("test-backend", _OptionedBackend)
    registry.register("plain", _PlainBackend)
    return registry


TEST_PLUGINS = Plugins(backends=private_backends(), policies=POLICIES)
"""What the config checks names and options against here (as ``bootstrap`` hands it
the process-wide registries)."""
from_yaml = partial(Config.from_yaml, plugins=TEST_PLUGINS)
from_mapping = partial(Config.from_mapping, plugins=TEST_PLUGINS)
load = partial(Config.load, plugins=TEST_PLUGINS)


def make_spec(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate(fields, context={PLUGINS_KEY: TEST_PLUGINS})


def issues_of(text: str, **kwargs: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        from_yaml(dedent(text), "pool.yaml", **kwargs)
    return caught.value.issues


def issue_at(issues: list[ConfigIssue], path: str) -> ConfigIssue:
    found = [issue for issue in issues if issue.path == path]
    assert len(found) == 1, f"expected one issue at {path!r}, got {issues}"
    return found[0]


# --- sizes, durations, defaults -----------------------------------------------------


def test_sizes_accept_decimal_binary_and_plain_bytes() -> None:
    config = from_yaml(
        dedent("""\
        pool:
          budgets: {"cuda:0": 6GB, cpu: 512MiB, disk: 1.5 GB}
          warm_budget: 1000
        models:
          a: {backend: plain, memory: 6GB}
          b: {backend: plain, memory: 512MiB}
        """)
    )
    assert config.pool.budgets == {
        "cuda:0": 6_000_000_000,
        "cpu": 512 * 1024**2,
        "disk": 1_500_000_000,
    }
    assert config.pool.warm_budget == 1000
    assert config.models["a"].memory == 6_000_000_000
    assert config.models["b"].memory == 536_870_912


def test_bad_size_says_what_was_expected() -> None:
    issues = issues_of("models:\n  a: {backend: plain, memory: lots}\n")
    issue = issue_at(issues, "models.a.memory")
    assert "expected a size such as 6GB" in issue.message
    assert "'lots'" in issue.message
    assert issue.line == 2


@pytest.mark.parametrize(
    ("written", "seconds"),
    [(600, 600.0), ("600s", 600.0), ("10m", 600.0), ("1h", 3600.0), ("1h30m", 5400.0), (2.5, 2.5)],
)
def test_ttl_accepts_numbers_and_duration_strings(written: object, seconds: float) -> None:
    spec = make_spec(id="a", backend="plain", ttl=written)
    assert spec.ttl == seconds


def test_pool_durations_and_their_bounds() -> None:
    pool = PoolSettings(wait_timeout="5m", starvation_limit=0, reap_interval="500ms")
    assert (pool.wait_timeout, pool.starvation_limit, pool.reap_interval) == (300.0, 0.0, 0.5)
    issues = issues_of("""\
        pool: {wait_timeout: soon, reap_interval: 0}
        models:
          a: {backend: plain, ttl: 0}
        """)
    assert issue_at(issues, "pool.wait_timeout").message == (
        "expected a duration such as 600, '10m' or '1h', got 'soon'"
    )
    assert "greater than 0" in issue_at(issues, "pool.reap_interval").message
    assert "greater than 0" in issue_at(issues, "models.a.ttl").message


def test_empty_file_is_the_default_config() -> None:
    config = from_yaml("")
    assert config.models == {}
    assert config.pool.strategy == "hybrid"
    assert config.server.port == 8080
    assert config.pool.state_dir == Path("~/.local/state/modelpool")
    assert default_state_dir() == Path("~/.local/state/modelpool").expanduser()


def test_top_level_must_be_a_mapping() -> None:
    issues = issues_of("- a\n- b\n")
    assert len(issues) == 1
    assert "expected a mapping" in issues[0].message
    assert "a list" in issues[0].message


# --- models -------------------------------------------------------------------------


def test_model_spec_from_python_with_the_fake_backend() -> None:
    spec = make_spec(id="test-a", backend="fake", memory="4GB", device="cpu")
    assert (spec.memory, spec.device, spec.priority, spec.ttl) == (4_000_000_000, "cpu", 5, None)


def test_extra_keys_are_backend_options_merged_with_explicit_options() -> None:
    config = from_yaml(
        dedent("""\
        models:
          a:
            backend: test-backend
            model_path: /m/a.gguf
            options: {n_ctx: 4096}
            tags: [chat, general]
        """)
    )
    spec = config.models["a"]
    assert spec.id == "a"
    assert spec.options == {"n_ctx": 4096, "model_path": "/m/a.gguf"}
    assert spec.tags == ("chat", "general")
    from_python = make_spec(id="b", backend="test-backend", model_path="/m/b.gguf")
    assert from_python.options == {"model_path": "/m/b.gguf"}


def test_an_option_given_twice_is_an_error() -> None:
    issues = issues_of("""\
        models:
          a: {backend: plain, seed: 1, options: {seed: 2}}
        """)
    assert "'seed' given both as a key and under 'options'" in issue_at(issues, "models.a").message


def test_backend_without_options_model_accepts_any_option() -> None:
    spec = make_spec(id="a", backend="plain", anything={"goes": True})
    assert spec.options == {"anything": {"goes": True}}


def test_backend_that_cannot_be_imported_does_not_block_the_config() -> None:
    # Its options cannot be checked, but the other models must stay usable.
    spec = make_spec(id="a", backend="broken", whatever=1)
    assert spec.options == {"whatever": 1}


def test_unknown_backend_option_has_path_line_and_suggestion() -> None:
    issues = issues_of("""\
        models:
          a:
            backend: test-backend
            model_path: /m/a.gguf
            memroy: 4GB
            n_ctx: many
        """)
    unknown = issue_at(issues, "models.a.memroy")
    assert unknown.message == "unknown key for backend 'test-backend' (did you mean 'memory'?)"
    assert (unknown.source, unknown.line) == ("pool.yaml", 5)
    bad_value = issue_at(issues, "models.a.n_ctx")
    assert "integer" in bad_value.message
    assert bad_value.line == 6


def test_option_issue_points_at_the_line_under_options() -> None:
    issues = issues_of("""\
        models:
          a:
            backend: test-backend
            options:
              model_path: /m/a.gguf
              n_ctx: many
        """)
    assert issue_at(issues, "models.a.n_ctx").line == 6


def test_missing_required_option_is_reported_with_other_field_errors() -> None:
    issues = issues_of("""\
        models:
          a: {backend: test-backend, priority: 500}
        """)
    assert issue_at(issues, "models.a.model_path").message == "required key is missing"
    assert "less than or equal to 100" in issue_at(issues, "models.a.priority").message


def test_unknown_backend_names_the_known_ones() -> None:
    issues = issues_of("models:\n  a: {backend: test-backnd}\n")
    message = issue_at(issues, "models.a.backend").message
    assert "unknown backend 'test-backnd'" in message
    assert "did you mean 'test-backend'?" in message
    assert "known: broken, fake, plain, test-backend" in message


def test_missing_backend_is_required() -> None:
    issues = issues_of("models:\n  a: {memory: 1GB}\n")
    issue = issue_at(issues, "models.a.backend")
    assert issue.message == "required key is missing"
    assert issue.line == 2  # the model's own line: the key itself is not there


@pytest.mark.parametrize("bad", ["a/b", "../x", "x@v1", "", "a b", ".hidden", "x" * 129])
def test_model_id_rejects_paths_versions_and_blanks(bad: str) -> None:
    with pytest.raises(ValidationError, match="expected an id"):
        make_spec(id=bad, backend="plain")


@pytest.mark.parametrize("good", ["a", "Qwen2.5-14B_instruct", "7", "x" * 128])
def test_model_id_accepts_letters_digits_dots_dashes(good: str) -> None:
    assert make_spec(id=good, backend="plain").id == good


def test_invalid_id_as_a_yaml_key_is_reported_at_that_model() -> None:
    issues = issues_of("models:\n  ok: {backend: plain}\n  x/y: {backend: plain}\n")
    issue = issue_at(issues, "models.x/y.id")
    assert "'x/y'" in issue.message
    assert issue.line == 3


def test_aliases_follow_id_rules() -> None:
    with pytest.raises(ValidationError, match="expected an id"):
        make_spec(id="a", backend="plain", aliases=["fine", "not/fine"])


def test_device_must_look_like_a_device() -> None:
    assert make_spec(id="a", backend="plain", device="cuda:1").device == "cuda:1"
    with pytest.raises(ValidationError, match="expected a device such as"):
        make_spec(id="a", backend="plain", device="CUDA 0")


def test_explicit_id_that_disagrees_with_its_key_is_an_error() -> None:
    issues = issues_of("""\
        models:
          a: {id: a, backend: plain}
          b: {id: c, backend: plain, priority: -1}
        """)
    assert "disagrees with its key 'b'" in issue_at(issues, "models.b.id").message
    # Reported together with the model's other problems, not instead of them.
    assert "greater than or equal to 0" in issue_at(issues, "models.b.priority").message
    assert {issue.path for issue in issues} == {"models.b.id", "models.b.priority"}


def test_python_spec_under_another_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping({"models": {"b": make_spec(id="a", backend="plain")}})
    assert "disagrees with its key 'b'" in issue_at(caught.value.issues, "models.b.id").message


def test_aliases_and_ids_must_be_unique_across_models() -> None:
    issues = issues_of("""\
        models:
          a: {backend: plain, aliases: [chat]}
          b: {backend: plain, aliases: [chat, a]}
        """)
    assert issue_at(issues, "models.b.aliases.0").message == (
        "'chat' is already an alias of model 'a'; ids and aliases must be unique"
    )
    assert "already the id of model 'a'" in issue_at(issues, "models.b.aliases.1").message
    assert issue_at(issues, "models.b.aliases.0").line == 3


def test_model_device_needs_a_budget_when_budgets_are_given() -> None:
    issues = issues_of("""\
        pool: {budgets: {cpu: 8GB}}
        models:
          a: {backend: plain, device: cuda:0}
          b: {backend: plain, device: cpu, memory: 6GB}
          c: {backend: plain}
        """)
    assert [issue.path for issue in issues] == ["models.a.device"]
    assert "no budget for device 'cuda:0'" in issues[0].message
    assert issues[0].line == 3


def test_a_model_larger_than_its_whole_budget_could_never_load() -> None:
    issues = issues_of("""\
        pool: {budgets: {cpu: 8GiB, cuda:0: 16GiB}}
        models:
          exact: {backend: plain, device: cpu, memory: 8GiB}
          over: {backend: plain, device: cpu, memory: 8.5GiB}
          anywhere: {backend: plain, memory: 16GiB}
          nowhere: {backend: plain, memory: 17GiB}
          versioned:
            backend: plain
            device: cpu
            memory: 1GiB
            versions:
              v2: {memory: 9GiB}
              v3: {device: cuda:0, memory: 9GiB}
        """)
    # Exactly the budget fits: the ledger refuses only what is larger.
    assert [issue.path for issue in issues] == [
        "models.over.memory",
        "models.nowhere.memory",
        "models.versioned.versions.v2.memory",
    ]
    over, nowhere, version = issues
    assert over.line == 4
    assert over.message == (
        "8.5 GiB is more than the whole cpu budget (8.0 GiB): the model could never load; "
        "lower memory or raise the budget"
    )
    assert "more than the largest budget (cuda:0: 16.0 GiB)" in nowhere.message
    assert version.line == 12


def test_a_model_file_must_exist_when_a_config_file_is_loaded(tmp_path: Path) -> None:
    text = f"models:\n  a:\n    backend: test-backend\n    model_path: {tmp_path / 'no.gguf'}\n"
    # From a string the file is not looked for (specs built in code, tests)...
    assert from_yaml(text).models["a"].options["model_path"].endswith("no.gguf")
    # ...but a config file that names a missing one could never load it.
    path = tmp_path / "pool.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("models.a.model_path", 4)
    assert issue.message == f"no file at {str(tmp_path / 'no.gguf')!r}: the model could never load"
    (tmp_path / "no.gguf").write_bytes(b"GGUF")
    assert load(path, environ={}).models["a"].id == "a"


def test_a_budget_needs_a_concrete_device() -> None:
    issues = issues_of("pool: {budgets: {auto: 8GB}}\n")
    assert "not 'auto'" in issue_at(issues, "pool.budgets.auto").message


# --- unknown keys and error reporting -----------------------------------------------


def test_unknown_keys_at_every_level_have_path_suggestion_and_line() -> None:
    issues = issues_of("""\
        server: {prot: 9000}
        pool:
          stratgy: lru
        modles: {}
        """)
    assert issue_at(issues, "modles").message == "unknown key (did you mean 'models'?)"
    assert issue_at(issues, "modles").line == 4
    assert issue_at(issues, "pool.stratgy").message == "unknown key (did you mean 'strategy'?)"
    assert issue_at(issues, "pool.stratgy").line == 3
    assert issue_at(issues, "server.prot").message == "unknown key (did you mean 'port'?)"
    assert issue_at(issues, "server.prot").line == 1


def test_unknown_key_without_a_close_match_lists_the_accepted_keys() -> None:
    issues = issues_of("zzz: 1\n")
    assert (
        issue_at(issues, "zzz").message
        == "unknown key; expected one of: alerts, cluster, health, models, pool, server"
    )


def test_keys_must_be_strings() -> None:
    assert issue_at(issues_of("1: x\n"), "1").message == "keys must be strings, got 1"


def test_source_cannot_be_set_from_a_file() -> None:
    assert issue_at(issues_of("source: elsewhere\n"), "source").message.startswith("unknown key")


def test_every_problem_is_reported_together_in_file_order() -> None:
    issues = issues_of("""\
        server:
          port: 99999
        pool:
          strategy: lruu
          probe: gpu
        models:
          a: {backend: plain, device: CUDA0, ttl: soon}
        """)
    assert [issue.path for issue in issues] == [
        "server.port",
        "pool.strategy",
        "pool.probe",
        "models.a.device",
        "models.a.ttl",
    ]
    assert [issue.line for issue in issues] == [2, 4, 5, 7, 7]
    assert all(issue.source == "pool.yaml" for issue in issues)
    assert "'auto', 'nvml', 'torch', 'system' or 'static'" in issues[2].message
    assert "got 'gpu'" in issues[2].message


def test_messages_do_not_leak_pydantic_details() -> None:
    issues = issues_of("server: {port: abc, host: [1]}\npool: 3\n")
    text = " ".join(issue.message for issue in issues)
    assert "pydantic" not in text
    assert "Input should" not in text
    assert "got 'abc'" in issue_at(issues, "server.port").message
    assert issue_at(issues, "pool").message == "expected a mapping, got 3"


def test_unknown_strategy_names_the_known_ones() -> None:
    message = issue_at(issues_of("pool: {strategy: lruu}\n"), "pool.strategy").message
    assert "unknown eviction policy 'lruu' (did you mean 'lru'?)" in message
    assert "hybrid" in message
    assert "cost_aware" in message


def test_strategy_accepts_the_enum() -> None:
    pool = PoolSettings(strategy=ModelSwitchingStrategy.LFU)
    assert pool.strategy == "lfu"
    assert type(pool.strategy) is str


def test_yaml_syntax_error_is_one_issue_with_its_line() -> None:
    issues = issues_of("pool:\n  strategy: lru\n  budgets: {cpu: 8GB\nmodels: {}\n")
    assert len(issues) == 1
    assert issues[0].message.startswith("invalid YAML: ")
    assert issues[0].line == 4


def test_yaml_tab_indentation_is_a_syntax_error() -> None:
    issues = issues_of("pool:\n\tstrategy: lru\n")
    assert len(issues) == 1
    assert issues[0].line == 2


def test_duplicate_yaml_keys_are_reported() -> None:
    issues = issues_of("""\
        models:
          a: {backend: plain}
          a: {backend: plain, memory: 1GB}
        """)
    assert issue_at(issues, "models.a").message == "duplicate key (first given on line 2)"
    assert issue_at(issues, "models.a").line == 3


def test_config_error_text_names_file_line_and_path() -> None:
    with pytest.raises(ConfigError) as caught:
        from_yaml("pool:\n  max_queue: 0\n", "conf/pool.yaml")
    assert "conf/pool.yaml:2: pool.max_queue: must be greater than or equal to 1" in str(
        caught.value
    )


# --- loading files ------------------------------------------------------------------


def test_load_reads_a_file_and_records_its_source(tmp_path: Path) -> None:
    path = tmp_path / "modelpool.yaml"
    path.write_text("models:\n  test-a: {backend: fake, memory: 4GB, device: cpu}\n")
    config = load(path, environ={})
    assert config.source == str(path)
    assert config.models["test-a"].memory == 4_000_000_000
    assert "source" not in config.model_dump()


def test_load_issues_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "modelpool.yaml"
    path.write_text("pool:\n  probe: gpu\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.issues[0].source == str(path)
    assert caught.value.issues[0].line == 2


def test_load_missing_file_mentions_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml") as caught:
        load(missing)
    assert caught.value.issues == [ConfigIssue(str(missing), "", "no such file")]


def test_load_applies_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "modelpool.yaml"
    path.write_text("server: {port: 8080}\n")
    monkeypatch.setenv("MODELPOOL_SERVER__PORT", "9123")
    assert load(path).server.port == 9123
    assert load(path, environ={}).server.port == 8080
    assert from_yaml(path.read_text()).server.port == 8080  # no env unless given


# --- environment overrides ----------------------------------------------------------

BASE = """\
pool:
  budgets: {"cuda:0": 10GB, cpu: 4GB}
models:
  test-a: {backend: plain, device: cpu}
  qwen2.5-7b: {backend: plain}
"""


def test_env_api_keys_are_comma_separated_without_blanks() -> None:
    config = from_yaml(BASE, environ={"MODELPOOL_API_KEYS": "k1, k2,,  "})
    assert config.server.api_keys == ["k1", "k2"]


def test_env_overrides_sections_and_parses_values_as_yaml() -> None:
    environ = {
        "MODELPOOL_POOL__STRATEGY": "lfu",
        "MODELPOOL_SERVER__PORT": "9000",
        "MODELPOOL_SERVER__HOST": "0.0.0.0",
        "MODELPOOL_POOL__WAIT_TIMEOUT": "2m",
    }
    config = from_yaml(BASE, environ=environ)
    assert config.pool.strategy == "lfu"
    assert config.server.port == 9000
    assert config.server.host == "0.0.0.0"
    assert config.pool.wait_timeout == 120.0


def test_env_budgets_match_existing_devices_or_name_new_ones() -> None:
    environ = {
        "MODELPOOL_POOL__BUDGETS__CPU": "8GB",
        "MODELPOOL_POOL__BUDGETS__CUDA_0": "12GB",
        "MODELPOOL_POOL__BUDGETS__CUDA_1": "24GiB",
    }
    config = from_yaml(BASE, environ=environ)
    assert config.pool.budgets == {
        "cuda:0": 12_000_000_000,
        "cpu": 8_000_000_000,
        "cuda:1": 24 * 1024**3,
    }


def test_env_budget_creates_the_pool_section_when_missing() -> None:
    config = from_yaml("", environ={"MODELPOOL_POOL__BUDGETS__CPU": "1GB"})
    assert config.pool.budgets == {"cpu": 1_000_000_000}


def test_env_models_match_ids_with_dashes_and_dots() -> None:
    environ = {
        "MODELPOOL_MODELS__TEST_A__TTL": "60",
        "MODELPOOL_MODELS__TEST_A__TAGS": "[code, chat]",
        "MODELPOOL_MODELS__QWEN2_5_7B__PINNED": "true",
    }
    config = from_yaml(BASE, environ=environ)
    assert config.models["test-a"].ttl == 60.0
    assert config.models["test-a"].tags == ("code", "chat")
    assert config.models["qwen2.5-7b"].pinned is True


def test_env_ignores_other_variables_and_the_config_file_name() -> None:
    environ = {"HOME": "/root", "MODELPOOL_CONFIG": "/etc/modelpool.yaml", "MODELPOOLX": "1"}
    assert from_yaml(BASE, environ=environ) == from_yaml(BASE)


def test_env_issues_name_the_variable() -> None:
    issues = issues_of(
        BASE,
        environ={
            "MODELPOOL_SERVER__PORT": "abc",
            "MODELPOOL_SERVE__PORT": "1",
            "MODELPOOL_POOL__STRATGY": "lru",
            "MODELPOOL_MODELS__NOPE__TTL": "60",
            "MODELPOOL_MODELS__TEST_A__TTL": "soon",
        },
    )
    by_source = {issue.source: issue for issue in issues}
    assert set(by_source) == {
        "MODELPOOL_SERVER__PORT",
        "MODELPOOL_SERVE__PORT",
        "MODELPOOL_POOL__STRATGY",
        "MODELPOOL_MODELS__NOPE__TTL",
        "MODELPOOL_MODELS__TEST_A__TTL",
    }
    assert all(issue.line is None for issue in issues)
    assert by_source["MODELPOOL_SERVER__PORT"].path == "server.port"
    assert "got 'abc'" in by_source["MODELPOOL_SERVER__PORT"].message
    assert "unknown setting (did you mean 'server'?)" in by_source["MODELPOOL_SERVE__PORT"].message
    assert by_source["MODELPOOL_POOL__STRATGY"].message == "unknown key (did you mean 'strategy'?)"
    nope = by_source["MODELPOOL_MODELS__NOPE__TTL"].message
    assert "no configured model matches 'NOPE'" in nope
    assert "qwen2.5-7b, test-a" in nope
    assert by_source["MODELPOOL_MODELS__TEST_A__TTL"].path == "models.test-a.ttl"


def test_env_cannot_descend_into_a_scalar() -> None:
    issues = issues_of("server: {port: 8080}\n", environ={"MODELPOOL_SERVER__PORT__X": "1"})
    assert [issue.source for issue in issues] == ["MODELPOOL_SERVER__PORT__X"]
    assert "server.port is not a mapping" in issues[0].message


def test_env_is_blamed_for_what_it_created() -> None:
    # With no server.port in the file, the variable builds a mapping there; the type
    # error that follows is the variable's, not the file's.
    issues = issues_of("", environ={"MODELPOOL_SERVER__PORT__X": "1"})
    assert [(issue.source, issue.path) for issue in issues] == [
        ("MODELPOOL_SERVER__PORT__X", "server.port")
    ]


def test_env_overrides_do_not_modify_the_callers_mapping() -> None:
    data: dict[str, Any] = {
        "pool": {"budgets": {"cpu": "4GB"}},
        "models": {"a": {"backend": "plain"}},
    }
    environ = {"MODELPOOL_POOL__BUDGETS__CPU": "8GB", "MODELPOOL_MODELS__A__TTL": "5"}
    config = from_mapping(data, environ=environ)
    assert config.pool.budgets == {"cpu": 8_000_000_000}
    assert config.models["a"].ttl == 5.0
    assert data == {"pool": {"budgets": {"cpu": "4GB"}}, "models": {"a": {"backend": "plain"}}}
    assert config.source == "<mapping>"


def test_env_can_override_a_model_given_as_a_spec_instance() -> None:
    data = {"models": {"a": make_spec(id="a", backend="plain", seed=3)}}
    config = from_mapping(data, environ={"MODELPOOL_MODELS__A__PRIORITY": "1"})
    assert config.models["a"].priority == 1
    assert config.models["a"].options == {"seed": 3}


def test_strategy_options_are_checked_by_the_strategy_itself(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text("pool:\n  strategy: hybrid\n  strategy_options:\n    weights: {idel: 0.3}\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    [issue] = caught.value.issues
    assert issue.path == "pool.strategy_options"
    assert "hybrid" in issue.message
    assert "idel" in issue.message
    ok = from_yaml("pool: {strategy: hybrid, strategy_options: {weights: {idle: 1}}}")
    assert ok.pool.strategy_options == {"weights": {"idle": 1}}
