"""bench/gpu_check.sh on a machine without CUDA: it says it skipped and exits 0,
writing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the script would run")
def test_without_cuda_the_gpu_check_skips_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "figures"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "gpu_check: skipped: no CUDA device" in done.stdout
    assert not out.exists()
