"""CallableBackend: any Python factory that returns a loaded object.

For models that live in the pool's own process and have no backend of their own:
a diffusers pipeline, a TTS model, user code. The factory runs in a worker thread
(loading blocks); so does the object's release hook. Options, flattened in a model's
YAML entry::

    tts:
      backend: callable
      factory: my_app.voices:load_tts      # "module:attribute", called with `kwargs`
      kwargs: {voice: luca}
      release: close                       # a method of the loaded object, if any
      memory: 3.5GB
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelpool.config import ModelSpec
from modelpool.core.ports import Handle
from modelpool.types import DeviceId

_REFERENCE = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


class CallableOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factory: str = Field(pattern=_REFERENCE)
    """``"package.module:function"``; attributes may be dotted (``module:Class.load``)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    pass_device: bool = False
    """Also pass ``device="cuda:0"`` (the device the pool placed it on)."""
    release: str | None = Field(default=None, pattern=r"^[A-Za-z_]\w*$")
    """Name of a method of the loaded object to call when unloading (``close``...)."""


def resolve(reference: str) -> Callable[..., Any]:
    """The object ``"module:attr.attr"`` names; a clear error if it is not there."""
    module_name, _, path = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"cannot import {module_name!r} for factory {reference!r}: {error}"
        ) from error
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"{reference!r}: {part!r} not found") from None
    if not callable(obj):
        raise TypeError(f"{reference!r} is not callable")
    factory: Callable[..., Any] = obj
    return factory


class CallableBackend:
    """Loads by calling a factory; unloads by calling the object's release hook."""

    options_model = CallableOptions

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        options = CallableOptions.model_validate(spec.options)
        factory = resolve(options.factory)
        kwargs = dict(options.kwargs)
        if options.pass_device:
            kwargs["device"] = device
        obj = await asyncio.to_thread(factory, **kwargs)
        if options.release is not None and not callable(getattr(obj, options.release, None)):
            raise TypeError(
                f"{options.factory!r} returned {type(obj).__name__}, "
                f"which has no method {options.release!r} to release it"
            )
        return Handle(spec.id, device, obj=obj, native=options)

    async def unload(self, handle: Handle) -> None:
        options: CallableOptions = handle.native
        obj, handle.obj = handle.obj, None  # drop our reference whatever the hook does
        if options.release is not None:
            await asyncio.to_thread(getattr(obj, options.release))
