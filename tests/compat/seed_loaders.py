"""A small real loader and monitor for seed 000's abstractions, for the compat tests.

``BufferLoader`` loads a model by allocating its bytes in host RAM (a bytearray of the
model's size), and ``BufferMonitor`` reports a fixed "VRAM" total minus what the
loader holds: the seed's ``ModelLoader``/``GPUMonitor`` contract, with real memory
behind it and no GPU needed.
"""

from __future__ import annotations

from modelpool.compat import GPUMonitor, ModelLoader

GIB = 1024**3


class BufferLoader(ModelLoader):
    def __init__(self, sizes_gb: dict[str, float], fail: frozenset[str] = frozenset()) -> None:
        self.sizes_gb = sizes_gb
        self.fail = fail
        self.loaded: dict[str, bytearray] = {}
        self.calls: list[tuple[str, str]] = []

    async def load_model(self, model_id: str) -> bool:
        self.calls.append(("load", model_id))
        if model_id in self.fail:
            return False
        self.loaded[model_id] = bytearray(int(self.sizes_gb[model_id] * GIB))
        return True

    async def unload_model(self, model_id: str) -> bool:
        self.calls.append(("unload", model_id))
        return self.loaded.pop(model_id, None) is not None


class BufferMonitor(GPUMonitor):
    def __init__(self, loader: BufferLoader, total_gb: float) -> None:
        self.loader, self.total_gb = loader, total_gb

    def get_total_vram(self) -> float:
        return self.total_gb

    def get_available_vram(self) -> float:
        held = sum(len(buffer) for buffer in self.loader.loaded.values())
        return self.total_gb - held / GIB
