"""The public API is exactly ``__all__``, and importing it pulls in no optional extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

import modelpool

OPTIONAL = ("torch", "pynvml", "fastapi", "starlette", "httpx", "uvicorn", "llama_cpp")


def test_all_lists_exactly_the_public_names() -> None:
    names = [name for name in modelpool.__all__ if name != "__version__"]
    assert len(modelpool.__all__) == len(set(modelpool.__all__))
    assert dir(modelpool) == sorted(modelpool.__all__)
    for name in names:  # each is there, imported on first use
        assert getattr(modelpool, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'ModelPol'"):
        _ = modelpool.ModelPol  # type: ignore[attr-defined]


def test_reading_a_config_imports_no_pool_and_no_plug_in() -> None:
    probe = (
        "import sys; from modelpool.config import Config; "
        "Config.from_mapping({'pool': {'strategy': 'lru', 'budgets': {'cpu': '1GB'}}, "
        "'models': {'a': {'backend': 'fake', 'memory': '1GB', 'preload': True}}}); "
        "print(sorted(m for m in sys.modules if m.startswith(('modelpool.core', "
        "'modelpool.policies', 'modelpool.backends', 'modelpool.probes'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_seed_api_names_are_kept() -> None:
    for method in (
        "allocate_model",
        "deallocate_model",
        "set_switching_strategy",
        "get_resource_status",
        "update_model_performance",
        "get_best_model_for_task",
        "can_fit",
        "require_free",
        "use",
        "use_sync",
    ):
        assert callable(getattr(modelpool.ModelPool, method)), method
    assert [s.name for s in modelpool.ModelSwitchingStrategy][:5] == [
        "LRU",
        "LFU",
        "FIFO",
        "PRIORITY",
        "SPECIALIZATION",
    ]


def test_import_pulls_in_no_optional_extra() -> None:
    probe = (
        "import sys, modelpool, modelpool.policies; "
        f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
