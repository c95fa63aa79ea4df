"""Versions of a model, and the health thresholds that judge them.

A model's spec describes its base version (``version``, ``v1`` unless given);
``versions`` lists the others, each as the keys it changes plus some metadata:

.. code-block:: yaml

    models:
      smollm2:
        backend: llamacpp
        model_path: /m/smol.gguf
        defaults: {temperature: 0.2}
        versions:
          v1: {author: ana, notes: first cut}      # the base's own entry: metadata only
          v2: {defaults: {temperature: 1.0}, n_ctx: 4096, author: bo, created: 2026-11-01}
        thresholds: {critical_error_rate: 0.1}     # over health.thresholds, key by key

Every version is a pool record of its own, ``smollm2@v2`` (``record_specs``): the base's
fields with the version's over them, ``options`` and ``defaults`` merged key by key
(unless the version names another backend: then only its own options count), checked
exactly as a model of its own. What names the model or decides how it is kept (``id``, ``aliases``,
``pinned``, ``thresholds``) is the same for all its versions.

``version_spec`` builds one such record; a config file's versions are checked through
it too, so an operator registering a version at run time gets the same messages, with
the key path under ``versions.<name>``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from modelpool.config.checks import PLUGINS_KEY, SINK, option_problems
from modelpool.config.fields import Seconds, VersionName, number_as_name
from modelpool.config.issues import Loc, describe, dotted, shown
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.plugins import Plugins

__all__ = [
    "DEFAULT_VERSION",
    "METADATA",
    "OVERRIDABLE",
    "PER_MODEL",
    "VersionSpec",
    "versions_problems",
    "ThresholdSettings",
    "merged_thresholds",
    "threshold_problems",
]

DEFAULT_VERSION = "v1"
"""The name of a model's base version when its spec gives none."""
METADATA = ("author", "notes", "created")
"""What a version entry says about the version; every other key overrides the base."""
OVERRIDABLE = (
    "backend",
    "options",
    "memory",
    "device",
    "devices",
    "split",
    "max_concurrent",
    "priority",
    "ttl",
    "group",
    "tags",
    "defaults",
)
"""The ``ModelSpec`` fields a version may change, besides any backend option."""
PER_MODEL = (
    "id",
    "aliases",
    "version",
    "versions",
    "pinned",
    "thresholds",
    "preload",
    "endpoints",
    "replicas",
    "max_queue",
    "fallback",
)
"""The ``ModelSpec`` fields that belong to the model: the same for every version."""

PLACEHOLDER_ID = "version"  # a version is validated under this id, then given its own
_VERSION_NAME: TypeAdapter[str] = TypeAdapter(VersionName)

Problems = list[tuple[Loc, str]]


# --- a version entry ------------------------------------------------------------------


def _timestamp(value: object) -> object:
    """A YAML date or datetime, or an ISO-8601 string, as an ISO-8601 string."""
    if value is None:
        return None
    if isinstance(value, dt.date):  # a datetime is a date too
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        for parse in (dt.date.fromisoformat, dt.datetime.fromisoformat):
            try:
                return parse(text).isoformat()
            except ValueError:
                pass
    raise ValueError(
        "expected a date such as 2026-11-01 or an ISO-8601 time such as "
        f"2026-11-01T09:30:00+00:00, got {shown(value)}"
    )


def _split(data: Mapping[Any, Any]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """An entry's metadata and its overrides (flat keys and an ``overrides:`` mapping)."""
    metadata = {key: value for key, value in data.items() if key in METADATA}
    flat = {key: value for key, value in data.items() if key not in (*METADATA, "overrides")}
    given = {} if data.get("overrides") is None else data["overrides"]
    if not isinstance(given, Mapping):
        raise ValueError(f"'overrides' must be a mapping, got {shown(given)}")
    clash = sorted(str(key) for key in flat if key in given)
    if clash:
        raise ValueError(
            f"{', '.join(map(repr, clash))} given both as a key and under 'overrides'; "
            "give each once"
        )
    return metadata, {**given, **flat}


class VersionSpec(BaseModel):
    """One entry of ``ModelSpec.versions``: metadata, and what differs from the base.

    Every key but ``author``, ``notes`` and ``created`` is collected into ``overrides``
    as written; ``version_spec`` checks them against the base spec.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    author: str | None = None
    notes: str | None = None
    created: Annotated[str | None, BeforeValidator(_timestamp)] = None
    """When the version was made: a YAML date or an ISO-8601 date or time, stored as
    an ISO-8601 string."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """``ModelSpec`` fields (``OVERRIDABLE``) and backend options, flat or under
    ``options``, as written."""

    @model_validator(mode="before")
    @classmethod
    def _collect_overrides(cls, data: Any) -> Any:
        if data is None:
            return {}  # "v1:" with nothing after it: a version with nothing to say
        if not isinstance(data, Mapping):
            return data
        metadata, overrides = _split(data)
        return {**metadata, "overrides": overrides}


# --- one version's spec ---------------------------------------------------------------


Validate = Callable[[dict[str, Any], dict[str, Any]], Any]
"""Validates a raw model spec with a validation context and returns the spec: the
caller's ``ModelSpec.model_validate``, handed in so that this module needs no
``ModelSpec`` (whose validation checks its versions: the two would import each other)."""


def version_overrides(
    name: str, entry: VersionSpec | Mapping[str, Any], base_version: str
) -> tuple[Mapping[Any, Any] | None, Problems]:
    """What version ``name``'s ``entry`` changes, and the problems of its name and
    metadata (the overrides are given even then, to name everything at once)."""
    problems: Problems = []
    try:
        _VERSION_NAME.validate_python(name)
    except ValidationError as error:
        problems.extend(_described(error))
    overrides: Mapping[Any, Any] | None = None
    if isinstance(entry, VersionSpec):
        overrides = entry.overrides
    else:
        try:
            overrides = VersionSpec.model_validate(entry).overrides
        except ValidationError as error:
            problems.extend(_described(error))
            if isinstance(entry, Mapping):
                with contextlib.suppress(ValueError):  # already among the entry's problems
                    overrides = _split(entry)[1]
    if overrides is not None and name == base_version:
        problems.extend(_base_entry_problems(name, overrides))
        overrides = {}
    return overrides, problems


def version_issues(name: str, problems: Problems, source: str) -> ConfigError:
    where = ("versions", name)
    issues = [ConfigIssue(source, dotted((*where, *loc)), message) for loc, message in problems]
    return ConfigError(issues or [ConfigIssue(source, dotted(where), "not a valid version")])


def versions_problems(
    data: Mapping[str, Any],
    validate: Validate,
    *,
    check_files: bool = False,
    plugins: Plugins | None = None,
) -> Problems:
    """The problems of a raw model spec's versions, at ``versions.<name>.<key>``.

    ``data`` is the spec as written, options gathered under ``options``. A problem the
    base has as well (a bad ``memory`` every version inherits) is the base's, reported
    there once. Entries that are not mappings, and metadata, are left to validation.
    """
    versions = data.get("versions")
    if not isinstance(versions, Mapping):
        return []
    base_version = number_as_name(data.get("version", DEFAULT_VERSION))
    inherited: set[tuple[Loc, str]] | None = None  # the base's own, found when needed
    problems: Problems = []
    for name, entry in versions.items():
        if isinstance(entry, VersionSpec):
            overrides = entry.overrides
        elif isinstance(entry, Mapping):
            try:
                overrides = _split(entry)[1]
            except ValueError:
                continue  # the entry's validation says so
        else:
            continue
        if number_as_name(name) == base_version:
            found = _base_entry_problems(str(name), overrides)
        else:
            if inherited is None:
                inherited = set(checked(data, {}, set(), validate, check_files, plugins)[1])
            found = checked(data, overrides, inherited, validate, check_files, plugins)[1]
        problems.extend((("versions", name, *loc), message) for loc, message in found)
    return problems


def _base_entry_problems(name: str, overrides: Mapping[Any, Any]) -> Problems:
    message = (
        f"{name!r} is the model's base version, and the base version's settings are the "
        "model's own; change them there (this entry may only give author, notes, created)"
    )
    return [((key,), message) for key in overrides]


def fields_of(base: object) -> dict[str, Any]:
    """A spec's ``OVERRIDABLE`` fields: what a version starts from."""
    return {name: getattr(base, name) for name in OVERRIDABLE}


def checked(
    base: Mapping[str, Any],
    overrides: Mapping[Any, Any],
    inherited: Collection[tuple[Loc, str]],
    validate: Validate,
    check_files: bool = False,
    plugins: Plugins | None = None,
) -> tuple[Any, Problems]:
    """The spec of ``base`` changed by ``overrides`` and the problems that are the
    version's (those in ``inherited`` are the base's): the spec only when there are none.
    """
    data, problems = _merged(base, overrides)
    keys = [*OVERRIDABLE, *METADATA]
    found = option_problems(
        data.get("backend"), data["options"], keys, check_files=check_files, plugins=plugins
    )
    spec = None
    try:
        # The sink takes the options' problems again: they were found just above, with
        # the keys a version accepts in the did-you-mean hints.
        context: dict[str, Any] = {SINK: [], PLUGINS_KEY: plugins}
        spec = validate({**data, "id": PLACEHOLDER_ID}, context)
    except ValidationError as error:
        found.extend(_described(error))
    problems.extend(problem for problem in found if problem not in inherited)
    return (spec if not found else None), problems


def _merged(
    base: Mapping[str, Any], overrides: Mapping[Any, Any]
) -> tuple[dict[str, Any], Problems]:
    """The raw spec of a version: the base's ``OVERRIDABLE`` fields, then its own;
    ``options`` and ``defaults`` are merged key by key."""
    problems: Problems = []
    fields = {key: base[key] for key in OVERRIDABLE if key in base and key != "options"}
    inherited = base.get("options")
    if not isinstance(inherited, Mapping) or (
        "backend" in overrides and overrides["backend"] != base.get("backend")
    ):
        inherited = {}  # another backend: the base's options are not its options
    own = {} if overrides.get("options") is None else overrides["options"]
    if not isinstance(own, Mapping):
        problems.append((("options",), f"expected a mapping, got {shown(own)}"))
        own = {}
    flat: dict[Any, Any] = {}
    for key, value in overrides.items():
        if key in PER_MODEL:
            message = f"{key!r} cannot differ per version; set it on the model itself"
            problems.append(((key,), message))
        elif key == "options":
            continue
        elif key == "defaults" and isinstance(value, Mapping):
            inherited_defaults = fields.get("defaults")
            merged = inherited_defaults if isinstance(inherited_defaults, Mapping) else {}
            fields[key] = {**merged, **value}
        elif key in OVERRIDABLE:
            fields[key] = value
        elif key in own:
            message = f"{key!r} given both as a key and under 'options'; give each option once"
            problems.append(((key,), message))
        else:
            flat[key] = value
    return {**fields, "options": {**inherited, **own, **flat}}, problems


def _described(error: ValidationError) -> Problems:
    return [describe(detail, lambda _loc: ()) for detail in error.errors(include_url=False)]


# --- health thresholds ----------------------------------------------------------------

Rate = Annotated[float, Field(ge=0, le=1)]
_PAIRS = (("warning_error_rate", "critical_error_rate"), ("warning_p95", "critical_p95"))


class ThresholdSettings(BaseModel):
    """When a model version is judged ``warning`` or ``critical`` (``monitor.health``).

    Under ``health.thresholds``: the defaults of every model. Under a model: only the
    keys given replace them (see ``merged_thresholds``). Rates are fractions, latencies
    durations; ``null`` turns a check off. Below ``min_requests`` requests in the
    window nothing is judged.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    warning_error_rate: Rate | None = 0.05
    critical_error_rate: Rate | None = 0.2
    warning_p95: Annotated[Seconds, Field(ge=0)] | None = None
    critical_p95: Annotated[Seconds, Field(ge=0)] | None = None
    min_requests: int = Field(default=20, ge=0)

    @model_validator(mode="after")
    def _warning_not_above_critical(self) -> Self:
        # Only pairs given together: a key left out may come from health.thresholds,
        # which the config checks once both are known.
        given = self.model_fields_set
        together = {key for pair in _PAIRS if set(pair) <= given for key in pair}
        problems = threshold_problems(self.model_dump(), together)
        if problems:
            raise ValueError("; ".join(message for _loc, message in problems))
        return self


def merged_thresholds(
    defaults: ThresholdSettings, override: ThresholdSettings | None
) -> dict[str, Any]:
    """``defaults``' values with those ``override`` gives explicitly over them, as plain
    keyword arguments (``monitor.health.Thresholds(**merged)``)."""
    values = defaults.model_dump()
    if override is not None:
        values.update({name: getattr(override, name) for name in override.model_fields_set})
    return values


def threshold_problems(
    values: Mapping[str, Any], given: Collection[str], other: str = "the default"
) -> Problems:
    """Warning thresholds above their critical ones, for pairs with a key in ``given``;
    each at the key given (the warning's when both are), the other one described by
    ``other`` when it was not given."""
    problems: Problems = []
    for warning, critical in _PAIRS:
        low, high = values.get(warning), values.get(critical)
        if low is None or high is None or low <= high or not {warning, critical} & set(given):
            continue
        key = warning if warning in given else critical
        described = {
            name: f"{name} {values[name]!r}" + ("" if name in given else f" ({other})")
            for name in (warning, critical)
        }
        message = (
            f"{described[warning]} is above {described[critical]}; warning must not exceed critical"
        )
        problems.append(((key,), message))
    return problems
