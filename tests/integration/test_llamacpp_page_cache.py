"""The page-cache warm tier with real llama.cpp servers (SmolLM2-135M, two copies of its
GGUF, one per model, in a private folder: no other process maps them, so what the
kernel caches is ours to see). The device budget holds one server, ``warm_budget`` two
files: evicted, a server stops and its file stays cached and booked; a request starts
it again; a dropped warm copy gives its bytes back, to the books and to the kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from process_checks import wait_gone
from test_llamacpp import GGUF, MB, chat, needs_llamacpp, refused
from test_process_backend import next_event

from modelpool import EventKind, LoadFailed, ModelPool, ModelSpec, ModelState
from modelpool.backends import page_cache

pytestmark = needs_llamacpp


def smollm2(model_id: str, path: Path) -> ModelSpec:
    return ModelSpec(
        id=model_id, backend="llamacpp", memory=300 * MB, device="cpu",
        options={"model_path": str(path), "n_ctx": 512, "n_threads": 1},
    )  # fmt: skip


@pytest.fixture
def ggufs(tmp_path: Path) -> tuple[Path, Path]:
    assert GGUF is not None
    copies = (tmp_path / "a.gguf", tmp_path / "b.gguf")
    for copy in copies:
        copy_to_disk(GGUF, copy)
    return copies


def copy_to_disk(source: Path, copy: Path) -> None:
    """Copy, written back and dropped: a freshly written file's pages are dirty, and the
    kernel drops no dirty page (a model file in use was written long ago)."""
    shutil.copyfile(source, copy)
    page_cache.flush_and_drop(str(copy))


def warm_models(pool: ModelPool) -> dict[str, int]:
    warm: dict[str, int] = pool.get_resource_status()["warm_memory"]["models"]
    return warm


def warm_committed(pool: ModelPool) -> int:
    committed: int = pool.get_resource_status()["warm_memory"]["committed"]
    return committed


def make_pool(*specs: ModelSpec, warm_budget: int) -> ModelPool:
    # No probe: each server stays booked at its 300 MB estimate; a warm copy is booked
    # at its file's size from the start of its offload (the backend's warm_bytes).
    return ModelPool(specs, budgets={"cpu": 350 * MB}, warm_budget=warm_budget, strategy="lru")


async def test_an_evicted_server_stops_keeps_its_file_booked_and_a_request_restarts_it(
    ggufs: tuple[Path, Path],
) -> None:
    a_file, b_file = ggufs
    size = a_file.stat().st_size
    pool = make_pool(smollm2("a", a_file), smollm2("b", b_file), warm_budget=400 * MB)
    async with pool:
        events = pool.events()
        async with pool.use("a") as first:
            assert (await chat(first.endpoint, "Say hello.")).strip()
            first_pid = first.handle.native.pid
        async with pool.use("b") as second:  # evicts a: to the warm tier
            assert pool.state("a") is ModelState.WARM
            assert await wait_gone(first_pid)  # no server left for a
            assert refused(first.endpoint)
            assert warm_models(pool) == {"a": size}  # the file's bytes, not the server's
            assert (await chat(second.endpoint, "Say hello.")).strip()
            second_pid = second.handle.native.pid
        async with pool.use("a") as again:  # restored: a new server, and it answers
            assert again.handle.native.pid != first_pid
            assert (await chat(again.endpoint, "Name a color.")).strip()
        await next_event(events, EventKind.LOADED, "a")
        restored = await next_event(events, EventKind.LOADED, "a")
        assert restored.detail["restored"] is True
        assert pool.state("b") is ModelState.WARM
        assert await wait_gone(second_pid)
        assert warm_models(pool) == {"b": size}  # a's file passed to its new server

        # Dropped from the warm tier: the books and the kernel get the bytes back.
        await pool.unload("b")
        assert pool.state("b") is ModelState.UNLOADED
        assert warm_committed(pool) == 0
        assert page_cache.resident_bytes(str(b_file)) == 0
    assert await wait_gone(again.handle.native.pid)


async def test_a_warm_file_the_policy_drops_for_room_is_let_go(
    ggufs: tuple[Path, Path], tmp_path: Path
) -> None:
    a_file, b_file = ggufs
    c_file = tmp_path / "c.gguf"
    copy_to_disk(a_file, c_file)
    size = a_file.stat().st_size
    specs = (smollm2("a", a_file), smollm2("b", b_file), smollm2("c", c_file))
    assert size < 150 * MB < 2 * size
    pool = make_pool(*specs, warm_budget=150 * MB)  # one kept file, not two
    async with pool:
        await pool.load("a")
        await pool.load("b")
        assert warm_models(pool) == {"a": size}
        await pool.load("c")  # b goes warm; room for its offload: lru drops a's file
        assert pool.state("a") is ModelState.UNLOADED
        assert pool.state("b") is ModelState.WARM
        assert warm_models(pool) == {"b": size}
        assert page_cache.resident_bytes(str(a_file)) == 0
        assert page_cache.resident_bytes(str(b_file)) == size
    assert warm_committed(pool) == 0


async def test_a_warm_model_whose_file_is_gone_fails_saying_so_and_frees_its_booking(
    ggufs: tuple[Path, Path],
) -> None:
    a_file, b_file = ggufs
    pool = make_pool(smollm2("a", a_file), smollm2("b", b_file), warm_budget=400 * MB)
    async with pool:
        await pool.load("a")
        await pool.load("b")
        assert pool.state("a") is ModelState.WARM
        a_file.unlink()
        with pytest.raises(LoadFailed) as failed:
            async with pool.use("a"):
                pass
        assert f"its model file {str(a_file)!r} is gone" in str(failed.value)
        assert pool.state("a") is ModelState.FAILED
        assert "a" not in warm_models(pool)  # (b went warm to make room for a)
