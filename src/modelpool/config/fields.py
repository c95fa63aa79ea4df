"""Annotated field types shared by the config models: ids, versions, devices, sizes,
durations.

Each converts what people write (``"6GB"``, ``"10m"``) and rejects the rest with a
message saying what was expected; backends can use them in their ``options_model``.
"""

from __future__ import annotations

import math
import os
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo

from modelpool.config.issues import shown
from modelpool.durations import parse_duration
from modelpool.types import Bytes, DeviceId, ModelId
from modelpool.units import parse_size

CHECK_FILES = "modelpool.config.check_files"
"""Validation context key: set while a config file is loaded, so that the files its
models name (``ModelFile``) must exist. Options validated again at load time are not
checked: the backend's own error says then that the file went away."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION_LENGTH = 64
_DEVICE = re.compile(r"^[a-z]+(:\d+)?$")


def _check_id(value: str) -> str:
    if not 1 <= len(value) <= 128 or not _ID.fullmatch(value):
        raise ValueError(
            "expected an id of 1-128 letters, digits, '.', '_' or '-' starting with a "
            f"letter or digit (no '/', spaces or '@'), got {value!r}"
        )
    return value


def _check_version(value: str) -> str:
    if not 1 <= len(value) <= _VERSION_LENGTH or not _ID.fullmatch(value):
        raise ValueError(
            f"expected a version name of 1-{_VERSION_LENGTH} letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit (no '@', '/' or spaces), got {value!r}"
        )
    return value


def _check_device(value: str) -> str:
    if not _DEVICE.match(value):
        raise ValueError(f"expected a device such as 'auto', 'cpu' or 'cuda:0', got {value!r}")
    return value


def _check_budget_device(value: str) -> str:
    if value == "auto":
        raise ValueError("a budget needs a concrete device such as 'cpu' or 'cuda:0', not 'auto'")
    return _check_device(value)


def _to_bytes(value: object) -> object:
    # parse_size would overflow on YAML's .inf and .nan; they are not sizes anyway.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a size such as 6GB or 512MiB, got {value!r}")
    if isinstance(value, int | float | str):
        return parse_size(value)
    raise ValueError(f"expected a size such as 6GB or 512MiB, got {shown(value)}")


def _to_seconds(value: object) -> object:
    if isinstance(value, int | float | str):
        return parse_duration(value)
    raise ValueError(f"expected a duration such as 600, '10m' or '1h', got {shown(value)}")


def _file_there(value: str, info: ValidationInfo) -> str:
    context = info.context
    if isinstance(context, dict) and context.get(CHECK_FILES):
        path = os.path.expanduser(value)
        if os.path.isdir(path):
            raise ValueError(f"{path!r} is a folder, not a file: the model could never load")
        if not os.path.isfile(path):
            raise ValueError(f"no file at {path!r}: the model could never load")
    return value


def number_as_name(value: object) -> object:
    # YAML reads a name such as 2 as a number; as a name it is the string "2".
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def one_or_many(value: object) -> object:
    # "tags: chat" is read as the one-element list it obviously means.
    return (value,) if isinstance(value, str) else value


Id = Annotated[ModelId, AfterValidator(_check_id)]
"""A model id or alias: 1-128 of letters, digits, '.', '_', '-'; no path or '@'."""
VersionName = Annotated[str, BeforeValidator(number_as_name), AfterValidator(_check_version)]
"""A model version's name (``v2``, ``2024-06.q4``): 1-64 of letters, digits, '.', '_',
'-'; no '@' (a version's record is ``model@version``), no path."""
Device = Annotated[DeviceId, AfterValidator(_check_device)]
"""``auto``, ``cpu``, ``cuda:0``: a lowercase name with an optional ``:N`` index."""
BudgetDevice = Annotated[DeviceId, AfterValidator(_check_budget_device)]
"""A ``Device`` other than ``auto``: a budget belongs to one real memory domain."""
Size = Annotated[Bytes, BeforeValidator(_to_bytes), Field(ge=0)]
"""Bytes, written as a number or a size string (``"6GB"``, ``"512MiB"``)."""
Seconds = Annotated[float, BeforeValidator(_to_seconds)]
"""Seconds, written as a number or a duration string (``"10m"``, ``"1h30m"``)."""
ModelFile = Annotated[str, Field(min_length=1), AfterValidator(_file_there)]
"""A path to a model's file (``~`` expanded); a config file that names a missing one is
refused when it is loaded."""
