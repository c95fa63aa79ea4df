"""The callable backend: an in-process object from any factory, released on unload."""

from __future__ import annotations

import callable_models
import pytest

from modelpool import Config, ConfigError, LoadFailed, ModelPool, ModelSpec, ModelState
from modelpool.plugins import PLUGINS

GB = 10**9


def greeter(model_id: str, **options: object) -> ModelSpec:
    fields = {"factory": "callable_models:make_greeter", "memory": GB, "device": "cpu"}
    return ModelSpec(id=model_id, backend="callable", **{**fields, **options})


async def test_loads_from_the_factory_and_releases_on_unload() -> None:
    pool = ModelPool(
        [greeter("hi", kwargs={"name": "ada"}, release="close")], budgets={"cpu": 2 * GB}
    )
    async with pool:
        async with pool.use("hi") as lease:
            assert lease.obj("hello") == "ada says hello"
            assert lease.endpoint is None
        await pool.unload("hi")
        assert callable_models.released[-1] == "ada"
        assert pool.state("hi") is ModelState.UNLOADED


async def test_the_device_is_passed_when_asked() -> None:
    pool = ModelPool([greeter("hi", pass_device=True)], budgets={"cpu": 2 * GB})
    async with pool, pool.use("hi") as lease:
        assert lease.obj.device == "cpu"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"factory": "callable_models:broken"}, "weights file is missing"),
        ({"factory": "no_such_module:load"}, "cannot import 'no_such_module'"),
        ({"factory": "callable_models:nothing"}, "'nothing' not found"),
        ({"release": "shutdown"}, "no method 'shutdown'"),
    ],
)
async def test_a_bad_factory_fails_the_load_clearly(options: dict[str, str], expected: str) -> None:
    pool = ModelPool([greeter("bad", **options), greeter("good")], budgets={"cpu": 2 * GB})
    async with pool:
        with pytest.raises(LoadFailed, match=expected):
            await pool.load("bad")
        assert pool.state("bad") is ModelState.FAILED
        async with pool.use("good") as lease:
            assert lease.obj("x") == "greeter says x"


def test_callable_options_are_checked_with_the_config() -> None:
    with pytest.raises(ConfigError, match=r"models\.tts\.factroy"):
        Config.from_yaml(
            "models:\n  tts: {backend: callable, factroy: 'a:b', memory: 1GB}\n", plugins=PLUGINS
        )
    with pytest.raises(ConfigError, match=r"models\.tts\.factory"):
        Config.from_yaml(
            "models:\n  tts: {backend: callable, factory: 'not a reference'}\n", plugins=PLUGINS
        )
