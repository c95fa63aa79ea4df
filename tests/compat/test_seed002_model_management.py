"""Seed 002 (the model management module): its examples, on ``modelpool.compat``.

``from scripts.core.model_management import ...`` becomes ``from modelpool.compat
import ...``. The seed's configs/model_manager_config.yaml becomes a modelpool config
with the seed's numbers (a 16 GB card with 15.5 GB safe, Qwen 11.5 GB, SDXL 10.5 GB,
SDXL+ControlNet 14.5 GB, GPT-SoVITS 3.5 GB, LLM and SDXL one at a time: an exclusive
group), its ``defaults`` the aliases ``llm``, ``sdxl`` and ``tts``. The models are small
real stand-ins: the LLM a real OpenAI-compatible server process
(tests/integration/servers/tiny_server.py), SDXL and TTS in-process objects loaded by
the ``callable`` backend (``compat_models.Echo``). "cuda:0" is the name of the budget
the books keep; nothing here needs a GPU. The seed's ``LLMClient`` and
``CharacterGenerator`` are its application's; the official ``openai`` client against
the LLM's server and the stand-in pipeline's ``generate`` take their places.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from compat_models import echo_spec

from modelpool import ModelPool, ModelSpec
from modelpool.compat import (
    ModelManager,
    ServiceController,
    VRAMMonitor,
    set_default_pool,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
HEAVY = {"device": "cuda:0", "group": "heavy"}


def seed_config() -> list[ModelSpec]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}"]
    return [
        ModelSpec(
            id="qwen-14b",
            backend="process",
            memory="11.5GiB",
            aliases=["llm"],
            options={"command": command},
            **HEAVY,
        ),
        ModelSpec.model_validate(
            {"id": "sdxl-base", **echo_spec("sdxl", "10.5GiB"), "aliases": ["sdxl"], **HEAVY}
        ),
        ModelSpec.model_validate({"id": "sdxl-controlnet", **echo_spec("cn", "14.5GiB"), **HEAVY}),
        ModelSpec.model_validate(
            {"id": "gpt-sovits-small", **echo_spec("tts", "3.5GiB"), "aliases": ["tts"]}
            | {"device": "cuda:0"}
        ),
    ]


@pytest.fixture(autouse=True)
def pool() -> Iterator[ModelPool]:
    """The seed's hardware: 16 GB with 15.5 GB safe; shared by every object made
    without a pool, as the seed's share the one GPU."""
    made = ModelPool(seed_config(), budgets={"cuda:0": "15.5GiB"}, strategy="lru")
    set_default_pool(made)
    yield made
    set_default_pool(None)  # stops it: every model unloaded, the server process ended


async def test_dynamic_model_switching() -> None:
    # --- from the seed's Dynamic Model Switching ---
    manager = ModelManager()

    # Use LLM
    with manager.use_llm(model="qwen-14b") as llm:  # `as llm` added: its server's URL
        # LLM is active, SDXL is stopped
        async with openai.AsyncOpenAI(base_url=llm.endpoint, api_key="unused") as llm_client:
            response = await llm_client.chat.completions.create(
                model="qwen-14b", messages=[{"role": "user", "content": "hello"}]
            )

    # Automatic switch to SDXL
    with manager.use_sdxl() as pipeline:
        # SDXL loaded, LLM stopped automatically
        image = pipeline.generate(prompt="...")

    # LLM can be restarted manually if needed
    # --- end ---
    assert "hello" in (response.choices[0].message.content or "")
    assert image == "sdxl: ..."
    assert not manager.controller.is_llm_running()  # the exclusive group stopped it
    manager.cleanup()


def test_vram_monitoring(capsys: pytest.CaptureFixture[str]) -> None:
    ModelManager().controller.start_llm(model="qwen-14b", wait=True)
    # --- from the seed's VRAM Monitoring ---
    monitor = VRAMMonitor(device=0)

    # Get current VRAM state
    snapshot = monitor.get_snapshot()
    print(f"Allocated: {snapshot.allocated_gb:.2f} GB")
    print(f"Free: {snapshot.free_gb:.2f} GB")

    # Check if model can fit
    can_fit = monitor.can_fit_model("qwen-14b")
    if can_fit:
        print("✓ Model can fit in available VRAM")

    # Get detailed statistics
    stats = monitor.get_detailed_stats()
    monitor.print_summary()
    # --- end ---
    out = capsys.readouterr().out
    assert "Allocated: 11.50 GB" in out
    assert "Free: 4.00 GB" in out
    assert can_fit  # it is resident
    assert "✓ Model can fit" in out
    assert stats["loaded_models"] == ["qwen-14b"]
    assert stats["peak_allocated_gb"] == pytest.approx(11.5)
    assert "Loaded:    qwen-14b" in out


def test_service_control_and_example_3(capsys: pytest.CaptureFixture[str]) -> None:
    # --- from the seed's Service Control ---
    controller = ServiceController()

    # Start LLM backend
    controller.start_llm(model="qwen-14b", wait=True)

    # Check if running
    if controller.is_llm_running():
        print("✓ LLM backend is healthy")

    # Stop LLM to free VRAM
    controller.stop_llm(wait=True)

    # Check status
    status = controller.get_llm_status()
    print(f"Running: {status.is_running}")
    print(f"VRAM: {status.vram_usage_gb:.1f} GB")
    # --- end ---
    assert "✓ LLM backend is healthy" in capsys.readouterr().out
    assert not status.is_running
    assert status.vram_usage_gb == 0.0

    # --- from the seed's Example 3: Manual Service Control ---
    controller = ServiceController()

    # Check current status
    print("Checking LLM status...")
    if controller.is_llm_running():
        print("✓ LLM is running")
    else:
        print("✗ LLM is not running")

        # Start LLM
        print("Starting LLM backend...")
        success = controller.start_llm(model="qwen-14b", wait=True)

        if success:
            print("✓ LLM started successfully")
        else:
            print("✗ Failed to start LLM")

    # Later: Stop LLM to load SDXL
    print("Stopping LLM to load SDXL...")
    controller.stop_llm(wait=True)

    # Verify stopped
    assert not controller.is_llm_running()
    print("✓ LLM stopped, VRAM freed")
    # --- end ---
    out = capsys.readouterr().out
    assert "✓ LLM started successfully" in out
    assert "✓ LLM stopped, VRAM freed" in out


def example_2(capsys: pytest.CaptureFixture[str]) -> str:
    # --- from the seed's Example 2: VRAM Safety Checks ---
    monitor = VRAMMonitor()

    # Check VRAM before loading
    models_to_check = ["qwen-14b", "sdxl-base", "sdxl-controlnet"]

    for model_name in models_to_check:
        if monitor.can_fit_model(model_name):
            estimate = monitor.get_model_estimate(model_name)
            print(f"✓ {model_name}: Can fit (~{estimate.estimated_vram_gb:.1f}GB)")
        else:
            print(f"✗ {model_name}: Insufficient VRAM")

    # Require specific VRAM before proceeding
    try:
        monitor.require_free_vram(required_gb=12.0, model_name="SDXL+ControlNet")
        print("✓ Sufficient VRAM available")
    except RuntimeError as e:
        print(f"✗ Error: {e}")
        # Handle insufficient VRAM (e.g., unload other models)
    # --- end ---
    return capsys.readouterr().out


def test_vram_safety_checks(capsys: pytest.CaptureFixture[str]) -> None:
    out = example_2(capsys)
    assert "✓ sdxl-controlnet: Can fit (~14.5GB)" in out
    assert "✓ Sufficient VRAM available" in out
    with ModelManager().use_llm():  # 11.5 GB taken: 4 GB left
        out = example_2(capsys)
    assert "✓ qwen-14b: Can fit (~11.5GB)" in out  # it is resident
    assert "✗ sdxl-base: Insufficient VRAM" in out
    assert "✗ sdxl-controlnet: Insufficient VRAM" in out
    assert "✗ Error: cannot make room for 'SDXL+ControlNet'" in out
    assert "memory held by: qwen-14b (11.5 GiB, in use" in out  # says what holds the memory


def test_example_4_tts(capsys: pytest.CaptureFixture[str]) -> None:
    # --- from the seed's Example 4: TTS with LLM Stopped ---
    manager = ModelManager()

    # TTS is lightweight (3-4GB), can run when LLM is stopped
    with manager.use_tts() as tts:
        # TTS model loaded (placeholder for now)
        # In Module 3, this will be:
        audio = tts.synthesize(text="Hello, my name is Luca!")  # the stand-in is real here
        print("TTS model ready")

    manager.cleanup()
    # --- end ---
    assert audio == b"tts says Hello, my name is Luca!"
    assert VRAMMonitor().get_snapshot().allocated_gb == 0.0


def test_monitor_during_development(capsys: pytest.CaptureFixture[str]) -> None:
    manager = ModelManager()
    # --- from the seed's Best Practices: 4. Monitor VRAM During Development ---
    monitor = VRAMMonitor()

    # Before loading
    print("Before:")
    monitor.print_summary()

    # Load model
    with manager.use_sdxl():
        print("During:")
        monitor.print_summary()

    # After unloading
    print("After:")
    manager.cleanup()  # added: the pool keeps SDXL resident until asked (or evicted)
    monitor.print_summary()
    # --- end ---
    during = capsys.readouterr().out.split("During:")[1].split("After:")[0]
    assert "Allocated: 10.50 GB" in during
    assert "Loaded:    sdxl-base" in during


async def test_async_with_and_the_agent_framework_shape() -> None:
    # --- from the seed's Module 6: Agent Framework (SDXL and TTS steps) ---
    class CreativeAgent:
        def __init__(self) -> None:
            self.model_manager = ModelManager()

        async def generate_scene(self, description: str) -> dict[str, Any]:
            # Step 2: SDXL generates image
            async with self.model_manager.use_sdxl() as pipeline:  # `async with` works too
                image = pipeline.generate(description)

            # Step 3: TTS generates voice
            with self.model_manager.use_tts() as tts:
                audio = tts.synthesize(description)

            return {"image": image, "audio": audio}

    # --- end ---
    scene = await CreativeAgent().generate_scene("a beach")
    assert scene == {"image": "sdxl: a beach", "audio": b"tts says a beach"}


def test_without_a_pool_the_error_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, pool: ModelPool
) -> None:
    set_default_pool(None)
    monkeypatch.delenv("MODELPOOL_CONFIG", raising=False)
    with pytest.raises(RuntimeError, match="set MODELPOOL_CONFIG"):
        ModelManager()
    with pytest.raises(ValueError, match="no budget for 'cuda:1'"):
        VRAMMonitor(device=1, pool=pool).get_snapshot()


def test_the_default_pool_comes_from_modelpool_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    set_default_pool(None)
    config = tmp_path / "modelpool.yaml"
    config.write_text(
        "pool: {budgets: {cpu: 1GB}, state_dir: " + str(tmp_path / "state") + "}\n"
        "models:\n"
        "  voice: {backend: callable, factory: 'compat_models:make_echo', memory: 10MB,\n"
        "          device: cpu, aliases: [tts], kwargs: {name: voice}}\n"
    )
    monkeypatch.setenv("MODELPOOL_CONFIG", str(config))
    manager = ModelManager(device="cpu")
    with manager.use_tts() as tts:
        assert tts.synthesize("hi") == b"voice says hi"
    assert manager.monitor.get_detailed_stats()["peak_allocated_gb"] > 0
    set_default_pool(None)  # stops the pool it built
    assert not manager.pool.running


class LLMClient:
    """The seed's application's LLM client, in a few lines: it posts to the server of
    the lease it is given (the seed's knows its service's fixed URL)."""

    def __init__(self, llm: Any) -> None:
        self.http = httpx.AsyncClient(base_url=llm.endpoint, timeout=30)

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def chat(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        answer = await self.http.post("/chat/completions", json={"messages": messages})
        answer.raise_for_status()
        reply: dict[str, Any] = answer.json()
        return reply


class CharacterGenerator:
    """The seed's application's image generator, over the SDXL stand-in's pipeline."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def generate_character(
        self, character: str, scene_description: str, quality_preset: str
    ) -> str:
        result: str = self.pipeline.generate(
            f"{character} | {scene_description} | {quality_preset}"
        )
        return result

    def cleanup(self) -> None:
        self.pipeline = None


async def test_example_1_llm_sdxl_workflow() -> None:
    # --- from the seed's Example 1: LLM → SDXL Workflow ---
    manager = ModelManager()

    # Step 1: Use LLM for intent analysis
    with manager.use_llm(model="qwen-14b") as llm:  # `as llm`: its server, for the client
        async with LLMClient(llm) as client:
            # Analyze user intent
            response = await client.chat(
                messages=[
                    {"role": "user", "content": "Generate an image of Luca running on the beach"}
                ]
            )
            prompt = response["choices"][0]["message"]["content"]

    # Step 2: Switch to SDXL for image generation
    with manager.use_sdxl() as pipeline:  # `as pipeline`: the generator draws with it
        generator = CharacterGenerator(pipeline)
        image = generator.generate_character(
            character="luca", scene_description=prompt, quality_preset="high"
        )
        generator.cleanup()

    # Step 3: Switch back to LLM for quality evaluation
    with manager.use_llm() as llm:
        async with LLMClient(llm) as client:
            # Evaluate generated image
            evaluation = await client.chat(
                messages=[
                    {"role": "user", "content": "Evaluate the quality of the generated image"}
                ]
            )

    manager.cleanup()
    # --- end ---
    assert "Luca running on the beach" in prompt
    assert image.startswith("sdxl: luca | ")
    assert image.endswith("| high")
    assert "Evaluate the quality" in evaluation["choices"][0]["message"]["content"]
    loads = [e.model_id for e in manager.pool.recent_events() if e.kind == "load_started"]
    assert loads == ["qwen-14b", "sdxl-base", "qwen-14b"]  # one heavy model at a time
