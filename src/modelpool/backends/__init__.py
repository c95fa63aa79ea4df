"""Backends: the ways a model gets into memory. Found by name through ``modelpool.plugins``."""

from modelpool.backends.fake import FakeBackend, FakeModel, FakeOptions

__all__ = ["FakeBackend", "FakeModel", "FakeOptions"]
