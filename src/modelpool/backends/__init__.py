"""Backends: the ways a model gets into memory. Found by name through ``modelpool.plugins``.

``process`` (an OpenAI-compatible server process), ``callable`` (any Python factory)
and ``fake`` (scripted, for tests and demos); more register through the entry-point
group ``modelpool.backends``.
"""

from modelpool.backends.callable import CallableBackend, CallableOptions
from modelpool.backends.fake import FakeBackend, FakeModel, FakeOptions
from modelpool.backends.process import ProcessBackend, ProcessOptions

__all__ = [
    "CallableBackend",
    "CallableOptions",
    "FakeBackend",
    "FakeModel",
    "FakeOptions",
    "ProcessBackend",
    "ProcessOptions",
]
