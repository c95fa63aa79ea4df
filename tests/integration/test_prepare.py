"""Backends prepare at start: torch is imported behind serving when the config has an
in-process model, and not at all when it has none."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

PROBE = textwrap.dedent("""\
    import asyncio, json, sys
    from modelpool import ModelPool, ModelSpec

    async def main(backend: str, prepare: bool) -> None:
        options = {"path": "/nowhere/model.safetensors", "kind": "safetensors",
                   "factory": "x:y"} if backend == "torch" else {}
        spec = ModelSpec(id="m", backend=backend, memory=1, device="cpu", options=options)
        pool = ModelPool([spec], budgets={"cpu": 10}, prepare_backends=prepare)
        before = "torch" in sys.modules
        async with pool:
            pass  # stop waits for the pool's tasks: the background import is done
        print(json.dumps({"before": before, "after": "torch" in sys.modules}))

    asyncio.run(main(sys.argv[1], sys.argv[2] == "on"))
""")


def imported(backend: str, prepare: str) -> dict[str, bool]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, backend, prepare],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    answer: dict[str, bool] = json.loads(out.stdout)
    return answer


def test_a_torch_model_s_libraries_are_imported_at_start() -> None:
    assert imported("torch", "on") == {"before": False, "after": True}


def test_a_config_with_no_in_process_model_imports_nothing() -> None:
    assert imported("fake", "on") == {"before": False, "after": False}


def test_preparing_can_be_turned_off() -> None:
    assert imported("torch", "off") == {"before": False, "after": False}
