"""The page-cache warm tier's decisions and its file operations.

Which process models qualify (pure, on their options), the config's checks, and what
``page_cache`` and ``KeptFiles`` do to a real file's pages, checked with ``mincore``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from modelpool import Config, ConfigError, ModelSpec
from modelpool.backends import page_cache
from modelpool.backends.kept_files import KeptFiles
from modelpool.backends.llamacpp import LlamaCppBackend
from modelpool.backends.process import ProcessBackend, ProcessOptions, warm_tier
from modelpool.plugins import PLUGINS

SLEEP = {"method": "POST", "path": "/sleep?level=1"}
WAKE = {"method": "POST", "path": "/wake_up"}
SIZE = 3 * 1024 * 1024 + 123  # more than a page, not a whole number of them


def options(**given: object) -> ProcessOptions:
    return ProcessOptions.model_validate({"command": ["srv"], **given})


def process_spec(**given: object) -> ModelSpec:
    return ModelSpec(id="m", backend="process", device="cpu", options={"command": ["srv"], **given})


def llamacpp_spec(path: Path, **given: object) -> ModelSpec:
    return ModelSpec(
        id="m", backend="llamacpp", device="cpu", options={"model_path": str(path), **given}
    )


# --- which models qualify -------------------------------------------------------------


def test_a_server_that_sleeps_has_the_sleep_tier() -> None:
    assert warm_tier(options(sleep=SLEEP, wake=WAKE)) == "sleep"


def test_a_server_that_keeps_its_file_cached_has_the_page_cache_tier() -> None:
    assert warm_tier(options(model_path="/m.gguf", keep_file_cached=True)) == "page cache"


def test_a_plain_server_has_no_warm_tier_even_with_a_model_file() -> None:
    assert warm_tier(options()) is None
    assert warm_tier(options(model_path="/m.gguf")) is None


def test_the_process_backend_offloads_only_models_with_a_warm_tier() -> None:
    backend = ProcessBackend()
    assert backend.can_offload(process_spec(sleep=SLEEP, wake=WAKE))
    assert backend.can_offload(process_spec(model_path="/m.gguf", keep_file_cached=True))
    assert not backend.can_offload(process_spec(model_path="/m.gguf"))
    assert not backend.can_offload(process_spec())


def test_llamacpp_models_keep_their_file_cached_unless_told_not_to(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    backend = LlamaCppBackend()
    assert backend.can_offload(llamacpp_spec(gguf))
    assert not backend.can_offload(llamacpp_spec(gguf, keep_file_cached=False))
    assert not backend.can_offload(llamacpp_spec(gguf, n_ctx="many"))  # refused by the config


def test_keep_file_cached_needs_a_model_path() -> None:
    with pytest.raises(ValueError, match="keep_file_cached needs model_path"):
        options(keep_file_cached=True)


def test_a_model_has_one_warm_tier_not_two() -> None:
    with pytest.raises(ValueError, match="two warm tiers"):
        options(model_path="/m.gguf", keep_file_cached=True, sleep=SLEEP, wake=WAKE)
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(
            "models:\n"
            "  m: {backend: process, memory: 1GB, command: [srv], model_path: /m.gguf,\n"
            "      keep_file_cached: true,\n"
            '      sleep: {path: "/sleep?level=1"}, wake: {path: "/wake_up"}}\n',
            plugins=PLUGINS,
        )
    assert "models.m" in str(error.value)
    assert "two warm tiers" in str(error.value)


# --- a file's pages --------------------------------------------------------------------


@pytest.fixture
def cold_file(tmp_path: Path) -> Path:
    """A file on disk with none of its pages cached (skips where the filesystem keeps
    every page, as tmpfs does: nothing there can be dropped)."""
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(SIZE))
    page_cache.flush_and_drop(str(path))
    if page_cache.resident_bytes(str(path)) != 0:
        pytest.skip("this filesystem keeps a file's pages (tmpfs?): nothing to drop")
    return path


def test_read_ahead_brings_every_page_in_and_drop_lets_them_go(cold_file: Path) -> None:
    assert page_cache.read_ahead(str(cold_file)) == SIZE
    assert page_cache.resident_bytes(str(cold_file)) == SIZE
    page_cache.drop(str(cold_file))
    assert page_cache.resident_bytes(str(cold_file)) == 0


def test_read_ahead_reads_through_a_buffer_where_sendfile_refuses(
    cold_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> int:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", refuse)
    assert page_cache.read_ahead(str(cold_file)) == SIZE
    assert page_cache.resident_bytes(str(cold_file)) == SIZE


def test_cache_file_reads_a_cold_file_once_and_a_cached_one_not_at_all(cold_file: Path) -> None:
    assert not page_cache.looks_cached(str(cold_file))
    assert page_cache.cache_file(str(cold_file)) == SIZE
    assert page_cache.resident_bytes(str(cold_file)) == SIZE
    assert page_cache.looks_cached(str(cold_file))
    assert page_cache.cache_file(str(cold_file)) == 0


def test_a_hole_in_a_cached_file_is_seen(cold_file: Path) -> None:
    page_cache.read_ahead(str(cold_file))
    fd = os.open(cold_file, os.O_RDONLY)
    try:
        # From 2 MiB to the end: the cache drops only whole folios, which a file read
        # sequentially gets large (up to 2 MiB, aligned to their size).
        os.posix_fadvise(fd, 2 << 20, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert page_cache.resident_bytes(str(cold_file)) < SIZE
    assert not page_cache.looks_cached(str(cold_file))
    assert page_cache.cache_file(str(cold_file)) == SIZE


def test_a_stopped_read_ahead_reads_nothing(cold_file: Path) -> None:
    stop = threading.Event()
    stop.set()
    assert page_cache.read_ahead(str(cold_file), stop) == 0


def test_dropping_a_missing_file_is_nothing_to_do(tmp_path: Path) -> None:
    page_cache.drop(str(tmp_path / "gone.gguf"))  # no error


def test_an_empty_file_has_no_resident_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    assert page_cache.resident_bytes(str(empty)) == 0
    assert page_cache.looks_cached(str(empty))


async def test_a_kept_file_is_read_ahead_and_dropped_when_the_last_hold_goes(
    cold_file: Path,
) -> None:
    kept_files = KeptFiles()
    first = kept_files.keep(str(cold_file))
    second = kept_files.keep(str(cold_file))  # two model ids over one GGUF
    assert first.size == SIZE
    await kept_files.ready(first)
    await kept_files.ready(second)
    assert page_cache.resident_bytes(str(cold_file)) == SIZE
    await kept_files.release(first, drop=True)
    assert kept_files.held(str(cold_file)) == 1
    assert page_cache.resident_bytes(str(cold_file)) == SIZE  # the other still holds it
    await kept_files.release(second, drop=True)
    assert kept_files.held(str(cold_file)) == 0
    assert page_cache.resident_bytes(str(cold_file)) == 0


async def test_a_kept_file_handed_to_a_new_server_keeps_its_pages(cold_file: Path) -> None:
    kept_files = KeptFiles()
    kept = kept_files.keep(str(cold_file))
    await kept_files.ready(kept)
    await kept_files.release(kept, drop=False)  # a restore: the server reads them now
    assert kept_files.held(str(cold_file)) == 0
    assert page_cache.resident_bytes(str(cold_file)) == SIZE


async def test_keeping_a_missing_file_fails_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone.gguf"
    with pytest.raises(OSError, match=r"gone\.gguf"):
        KeptFiles().keep(str(missing))


def test_a_kept_file_books_its_own_size_in_the_warm_tier(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"\0" * SIZE)
    process = ProcessBackend()
    kept = process_spec(model_path=str(model), keep_file_cached=True)
    assert process.warm_bytes(kept) == SIZE
    assert process.warm_bytes(process_spec(sleep=SLEEP, wake=WAKE)) is None  # as on its device
    assert process.warm_bytes(process_spec(model_path=str(tmp_path / "gone"),
                                           keep_file_cached=True)) is None  # fmt: skip
    llamacpp = LlamaCppBackend()
    assert llamacpp.warm_bytes(llamacpp_spec(model)) == SIZE
    assert llamacpp.warm_bytes(llamacpp_spec(model, keep_file_cached=False)) is None
