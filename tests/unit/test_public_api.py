"""The public API is exactly ``__all__``, and importing it pulls in no optional extra."""

from __future__ import annotations

import subprocess
import sys

import modelpool

OPTIONAL = ("torch", "pynvml", "fastapi", "starlette", "httpx", "uvicorn", "llama_cpp")


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(modelpool) if not name.startswith("_")}
    submodules = {
        "backends",
        "config",
        "core",
        "errors",
        "plugins",
        "policies",
        "probes",
        "types",
        "units",
        "durations",
        # Imported by other tests in the same process: subpackages, not names.
        "bootstrap",
        "cli",
        "client",
        "compat",
        "demo",
        "http",
        "monitor",
        "rollout",
        "sim",
    }
    assert set(modelpool.__all__) - {"__version__"} == public - submodules
    assert len(modelpool.__all__) == len(set(modelpool.__all__))


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
