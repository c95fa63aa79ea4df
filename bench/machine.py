"""What the benchmarks ran on, for their result files."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (else what platform knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """CPU, core count and Python, the line each result file starts from."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{cpu_name()}, {os.cpu_count()} cores, {python}"
