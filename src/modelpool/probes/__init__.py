"""Memory probes: evidence of what memory is really in use.

``static`` (configured figures), ``system`` (psutil RAM), ``nvml`` (NVIDIA driver),
``torch`` (torch.cuda), ``auto`` (the best of these available here), found by name
through ``modelpool.plugins.PROBES``. Only ``static`` is imported with this package;
the others import their library when built.
"""

from modelpool.probes.static import StaticProbe

__all__ = ["StaticProbe"]
