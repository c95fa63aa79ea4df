"""Factories the callable-backend tests load (a module, since the backend imports by name)."""

from __future__ import annotations

released: list[str] = []


class Greeter:
    """A stand-in for an in-process model: answers, and records when it is released."""

    def __init__(self, name: str, device: str = "unset") -> None:
        self.name, self.device = name, device

    def __call__(self, text: str) -> str:
        return f"{self.name} says {text}"

    def close(self) -> None:
        released.append(self.name)


def make_greeter(name: str = "greeter", device: str = "unset") -> Greeter:
    return Greeter(name, device)


def broken() -> Greeter:
    raise RuntimeError("weights file is missing")
