"""Device binding: what a server process the pool starts may see of the box's GPUs.

A model booked on ``cuda:1`` must use ``cuda:1`` only: a server started with every GPU
visible spreads itself over all of them (llama.cpp does by default) and the books are
wrong from its first load. So the process backend starts each server with the
visibility variables set from its placement:

* ``cuda:N`` (one or several): ``CUDA_VISIBLE_DEVICES`` and ``HIP_VISIBLE_DEVICES``
  list those devices, as this pool's process numbers them. When the pool itself runs
  with ``CUDA_VISIBLE_DEVICES`` set, ``cuda:N`` is its N-th entry (an ordinal or a
  ``GPU-``/``MIG-`` UUID), which is what the child is given: ``cuda:N`` names the same
  GPU for the pool, its probe (``probes.gpu_ids``) and the server. Inside the server
  the visible devices are numbered from 0 again (``cuda:1`` is its ``cuda:0``).
* ``cpu``: no GPU visible (``CUDA_VISIBLE_DEVICES=""``; HIP gets ``-1``, an index no
  device has, since an empty value is not documented to hide devices there).
* any other device (``mps``, ``xpu:0``...): the environment is left as it is.

``ROCR_VISIBLE_DEVICES`` is left as the pool has it: ROCm applies it first, and HIP's
indices count within the devices it leaves (ROCm, "GPU isolation techniques"); setting
it to the same list as ``HIP_VISIBLE_DEVICES`` would filter twice.

A model's own ``env`` may not set these variables: the placement decides where a
model runs, and a fixed value there would silently disagree with the books (``device:
cuda:2`` pins a model; the config check says so).

Placeholders for argument lists and env values (``placeholders``): ``${DEVICE}``
(``cuda:1``, the main device), ``${DEVICE_INDEX}`` (``1``), ``${DEVICE_INDICES}``
(``1,3``), ``${DEVICE_COUNT}`` (``2``: vLLM's ``--tensor-parallel-size``) and
``${TENSOR_SPLIT}`` (``0.25,0.75``: llama.cpp's ``--tensor-split``). The indices are
the pool's; a server that sees only its own devices numbers them from 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from modelpool.core.handle import Placement
from modelpool.core.visible_devices import parse_visible_devices
from modelpool.types import DeviceId

VISIBILITY_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
"""Set (or kept) by the pool from a model's placement, never by the model's ``env``."""
DEVICE_PLACEHOLDERS = ("DEVICE", "DEVICE_INDEX", "DEVICE_INDICES", "DEVICE_COUNT", "TENSOR_SPLIT")
HIDDEN = {"CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "-1"}
"""A ``cpu`` placement: no GPU visible."""

_INDEXED = re.compile(r"^[a-z]+:(\d+)$")
_GPU = re.compile(r"^cuda:(\d+)$")


class BindingError(RuntimeError):
    """The placement names a GPU the pool's own process cannot see."""


def device_index(device: DeviceId) -> int | None:
    """``1`` for ``cuda:1`` (any ``name:N``); None for ``cpu`` and other unnumbered devices."""
    match = _INDEXED.match(device)
    return int(match.group(1)) if match else None


def placeholders(placement: Placement) -> dict[str, str | None]:
    """The device placeholders' values for ``placement`` (None: not defined for it,
    e.g. ``${DEVICE_INDEX}`` on ``cpu``)."""
    indices = [device_index(device) for device in placement.devices]
    known = [index for index in indices if index is not None]
    return {
        "DEVICE": placement.device,
        "DEVICE_INDEX": None if indices[0] is None else str(indices[0]),
        "DEVICE_INDICES": ",".join(map(str, known)) if len(known) == len(indices) else None,
        "DEVICE_COUNT": str(len(placement.devices)),
        "TENSOR_SPLIT": ",".join(f"{share:g}" for share in placement.split),
    }


def missing_reason(placement: Placement) -> str:
    """Why an index placeholder has no value for ``placement``."""
    return f"the model is placed on {', '.join(placement.devices)}, which has no device index"


def visibility(placement: Placement, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables a server placed at ``placement`` is started with (added to the
    pool's environment ``environ``); {} for devices the pool does not bind."""
    devices = placement.devices
    if devices == ("cpu",):
        return dict(HIDDEN)
    indices = [_GPU.match(device) for device in devices]
    if not all(indices):
        return {}  # mps, xpu...: nothing the pool knows how to bind
    ordinals = [int(match.group(1)) for match in indices if match is not None]
    # HIP reads CUDA_VISIBLE_DEVICES where HIP_VISIBLE_DEVICES is not set.
    hip_own = environ.get("HIP_VISIBLE_DEVICES", environ.get("CUDA_VISIBLE_DEVICES"))
    return {
        "CUDA_VISIBLE_DEVICES": _entries(
            ordinals, environ.get("CUDA_VISIBLE_DEVICES"), "CUDA_VISIBLE_DEVICES"
        ),
        "HIP_VISIBLE_DEVICES": _entries(
            ordinals,
            hip_own,
            "HIP_VISIBLE_DEVICES" if "HIP_VISIBLE_DEVICES" in environ else "CUDA_VISIBLE_DEVICES",
        ),
    }


def _entries(ordinals: list[int], own: str | None, variable: str) -> str:
    """The pool's ``cuda:N`` for each of ``ordinals``, as entries of ``variable``."""
    visible = parse_visible_devices(own)
    if visible is None:  # the pool sees every GPU: cuda:N is device N
        return ",".join(map(str, ordinals))
    entries = []
    for ordinal in ordinals:
        if ordinal >= len(visible):
            seen = f"cuda:0 to cuda:{len(visible) - 1}" if visible else "no GPU"
            raise BindingError(
                f"cuda:{ordinal} is not a GPU this pool's process can see: its own "
                f"{variable} is {own!r} ({seen})"
            )
        entries.append(visible[ordinal])
    return ",".join(entries)


def env_problem(env: Mapping[str, str]) -> str | None:
    """Why a model's ``env`` may not be used as it is (None: it may)."""
    given = [name for name in VISIBILITY_VARIABLES if name in env]
    if not given:
        return None
    verb = "is" if len(given) == 1 else "are"
    return (
        f"{', '.join(given)} {verb} set by the pool from the model's placement (device: "
        "cuda:N, or devices: [...]); remove it from env and place the model instead"
    )


__all__ = [
    "DEVICE_PLACEHOLDERS",
    "VISIBILITY_VARIABLES",
    "BindingError",
    "device_index",
    "env_problem",
    "missing_reason",
    "placeholders",
    "visibility",
]
