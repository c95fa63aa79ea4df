"""Memory probes: evidence of what memory is really in use."""

from modelpool.probes.static import StaticProbe

__all__ = ["StaticProbe"]
