"""Small real in-process models for the compat tests, loaded by the ``callable`` backend
(which imports its factories by name, hence a module of their own)."""

from __future__ import annotations


class Echo:
    """Answers with its name: enough to tell which model served a call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.weights = bytearray(1024 * 1024)  # a MiB of "weights", really held

    def generate(self, prompt: str = "") -> str:
        return f"{self.name}: {prompt}"

    def synthesize(self, text: str) -> bytes:
        return f"{self.name} says {text}".encode()


def make_echo(name: str = "echo") -> Echo:
    return Echo(name)


def echo_spec(name: str, memory: str = "1GB", **fields: object) -> dict[str, object]:
    """The config of an ``Echo`` model, as a mapping of a ``ModelSpec``'s fields."""
    return {
        "backend": "callable",
        "factory": "compat_models:make_echo",
        "kwargs": {"name": name},
        "memory": memory,
        **fields,
    }
