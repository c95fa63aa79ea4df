"""Servers the process backend starts number GPUs in PCI order, as NVML does (issue 15,
point 2): CUDA_DEVICE_ORDER=PCI_BUS_ID is in their environment unless a model's
``env`` sets it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from modelpool import ModelSpec
from modelpool.backends.process import ProcessBackend

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")

TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")


def server(record: Path, **options: object) -> ModelSpec:
    # The shell writes the variable down, then becomes the tiny server.
    script = (
        f'printf "%s" "$CUDA_DEVICE_ORDER" > {record}; '
        f"exec {sys.executable} {TINY} --port ${{PORT}} --name ${{MODEL_ID}}"
    )
    return ModelSpec(
        id="envcheck", backend="process", memory=10**9, device="cpu",
        options={"command": ["sh", "-c", script], **options},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, "PCI_BUS_ID"), ({"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, "FASTEST_FIRST")],
)
async def test_servers_start_with_pci_bus_order(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    record = tmp_path / "order.txt"
    backend = ProcessBackend()
    handle = await backend.load(server(record, env=env), "cpu")
    try:
        assert record.read_text() == expected
    finally:
        await backend.unload(handle)
