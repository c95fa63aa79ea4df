"""The configuration: one YAML file, validated, with ``MODELPOOL_*`` env overrides.

.. code-block:: yaml

    server: {host: 127.0.0.1, port: 8080}
    pool:
      strategy: hybrid
      budgets: {"cuda:0": 15.5GB, cpu: 8GB}
      warm_budget: 32GB
    models:
      smollm2:
        backend: llamacpp
        model_path: /models/SmolLM2-135M-Instruct.Q4_1.gguf   # a backend option
        memory: 300MB
        device: cpu
        tags: [chat, general]
        ttl: 10m
        versions:                     # other versions: what differs, and who made them
          v2: {n_ctx: 4096, author: bo}
    health: {window: 60s, thresholds: {critical_error_rate: 0.2}}
    alerts: {webhooks: [{url: "${SLACK_WEBHOOK_URL}", levels: [critical]}]}

Keys of a model that are not ``ModelSpec`` fields are options of its backend and are
checked against the backend's ``options_model`` when it has one. Every problem is
reported at once in a ``ConfigError``, each with its file, key path and line. A model's
``versions`` are checked as models of their own (see ``modelpool.config.versions``).

Env overrides (see ``modelpool.config.env``): ``Config.load`` reads ``os.environ``
unless given ``environ``; ``from_yaml`` and ``from_mapping`` apply none unless given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from modelpool.config.alerts import ENVIRON, AlertSettings, WebhookSettings
from modelpool.config.checks import (
    PLUGINS_KEY,
    SINK,
    checks_files,
    option_problems,
    plugins_of,
    registered,
    report,
)
from modelpool.config.env import Override, apply_env_overrides, override_for
from modelpool.config.fields import (
    CHECK_FILES,
    Device,
    Id,
    Seconds,
    Size,
    VersionName,
    one_or_many,
)
from modelpool.config.issues import (
    Loc,
    describe,
    dotted,
    duplicate_keys,
    line_of,
    shown,
    unknown_key_message,
    yaml_syntax_issue,
)
from modelpool.config.placement import (
    Devices,
    ReplicaSettings,
    Share,
    capacity,
    spanning_problems,
    split_problem,
)
from modelpool.config.settings import (
    ClusterSettings,
    HealthSettings,
    PoolSettings,
    ServerSettings,
    TlsSettings,
)
from modelpool.config.versions import (
    DEFAULT_VERSION,
    ThresholdSettings,
    Validate,
    VersionSpec,
    checked,
    fields_of,
    merged_thresholds,
    threshold_problems,
    version_issues,
    version_overrides,
    versions_problems,
)
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.plugins import BACKENDS, PLUGINS, Plugins
from modelpool.types import ModelId
from modelpool.units import format_size

REMOTE = "remote"
"""The backend of a model served by a server modelpool does not start
(``backends/remote.py``): it books no memory on the pool's devices."""
BOOKED_BY_THE_POOL = ("memory", "device", "devices", "split", "group", "replicas")
"""What a remote model may not set: each places or sizes memory on the pool's devices."""


class ModelSpec(BaseModel):
    """One model the pool may load. Unknown keys become backend ``options``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id
    backend: str
    options: dict[str, Any] = Field(default_factory=dict)
    memory: Size | None = None
    device: Device = "auto"
    priority: int = Field(default=5, ge=0, le=100)
    pinned: bool = False
    ttl: Annotated[Seconds, Field(gt=0)] | None = None
    group: str | None = Field(default=None, min_length=1)
    tags: Annotated[tuple[str, ...], BeforeValidator(one_or_many)] = ()
    aliases: Annotated[tuple[Id, ...], BeforeValidator(one_or_many)] = ()
    defaults: dict[str, Any] = Field(default_factory=dict)
    """Request fields the server fills in when a client leaves them out (``temperature``)."""
    version: VersionName = DEFAULT_VERSION
    """The name of the version this spec describes: the model's base version."""
    versions: dict[VersionName, VersionSpec] = Field(default_factory=dict)
    """Other versions, each as what it changes; an entry named ``version`` only gives
    the base's metadata. ``record_specs`` makes their specs."""
    thresholds: ThresholdSettings | None = None
    """This model's health thresholds: the keys given replace ``health.thresholds``'."""
    preload: bool | Annotated[int, Field(ge=0, le=100)] = False
    """Load at start, behind requests and only into room nobody needs: ``true`` (in the
    order of ``priority``) or a priority of its own (lower first)."""
    endpoints: (
        Annotated[
            tuple[Literal["chat", "completions", "embeddings"], ...],
            BeforeValidator(one_or_many),
            AfterValidator(lambda names: tuple(dict.fromkeys(names))),
            Field(min_length=1),
        ]
        | None
    ) = None
    """What it serves under ``/v1`` (``chat``: chat/completions); anything else is a 400
    before any load. None: its backend's default (``modelpool.http.served``)."""
    devices: Devices | None = None
    """Spread over this many devices (any that fit), or these; None: one (``device``)."""
    split: tuple[Share, ...] | None = None
    """The share of the model's memory on each of its ``devices`` (default: by free memory)."""
    replicas: ReplicaSettings | None = None
    """Serve this id with several loaded copies (``id#1``, ``id#2``...); None: one."""
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    """Requests one copy serves at once; more wait in the model's queue (None: no limit)."""
    max_queue: Annotated[int, Field(ge=1)] | None = None
    """Requests that may wait for this model; more get a 429 (None: the pool's ``max_queue``)."""
    fallback: Id | None = None
    """The model that serves this one's requests when it cannot load (its load failed,
    its circuit is open, it does not fit): typically a ``backend: remote`` one. One hop:
    the fallback's own fallback is never followed (the config refuses such a chain)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The id followed by the aliases: every name this model answers to."""
        return (self.id, *self.aliases)

    @property
    def remote(self) -> bool:
        """Served by a server modelpool does not start (``backend: remote``): booked with
        no bytes, never an eviction victim, counted toward no ``max_models``."""
        return self.backend == REMOTE

    @property
    def base_id(self) -> str:
        """The model's id without the version: a version's record is ``model@version``."""
        return self.id.partition("@")[0]

    @model_validator(mode="before")
    @classmethod
    def _flatten_options(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        fields = cls.model_fields
        # "versions:" left empty, like "options:", means none.
        kept = {
            key: value
            for key, value in data.items()
            if key in fields and not (key == "versions" and value is None)
        }
        extra = {key: value for key, value in data.items() if key not in fields}
        # "options:" left empty in YAML means no options, like leaving it out.
        options = {} if data.get("options") is None else data["options"]
        if not isinstance(options, Mapping):
            return kept  # the options field reports it; the extra keys cannot go anywhere
        clash = sorted(str(key) for key in extra if key in options)
        if clash:
            raise ValueError(
                f"{', '.join(map(repr, clash))} given both as a key and under 'options'; "
                "give each option once"
            )
        data = {**kept, "options": {**options, **extra}}
        # Options are checked before the fields so that their problems are reported even
        # when another field of the same model is wrong too.
        check_files, plugins = checks_files(info), plugins_of(info)
        problems = option_problems(
            data.get("backend"),
            data["options"],
            list(cls.model_fields),
            check_files=check_files,
            plugins=plugins,
        )
        # Versions too: each is checked as a model of its own, at versions.<name>.<key>.
        problems.extend(
            versions_problems(data, _validator(cls), check_files=check_files, plugins=plugins)
        )
        return report(data, problems, info, ("models", str(data.get("id"))))

    @model_validator(mode="after")
    def _placement_fits_together(self) -> Self:
        if self.devices is not None and self.device != "auto":
            raise ValueError(
                f"both device ({self.device!r}) and devices are given: use 'devices' alone "
                "to say which devices a model spans"
            )
        if self.split is not None:
            problem = split_problem(self.devices, self.split)
            if problem is not None:
                raise ValueError(f"split: {problem}")
        return self

    @model_validator(mode="after")
    def _remote_books_nothing(self) -> Self:
        if not self.remote:
            return self
        given = [
            name
            for name in BOOKED_BY_THE_POOL
            if name in self.model_fields_set and not (name == "device" and self.device == "auto")
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} given for a remote model: it runs on its own server and "
                "books no memory here; leave them out"
            )
        return self

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str, info: ValidationInfo) -> str:
        plugins = plugins_of(info)
        return registered(plugins.backends if plugins else BACKENDS, name)

    @field_serializer("thresholds")
    def _given_thresholds(self, thresholds: ThresholdSettings | None) -> dict[str, Any] | None:
        # Only the keys given: dumped and read back, the others still come from health.
        return None if thresholds is None else thresholds.model_dump(exclude_unset=True)


def _validator(spec_type: type[ModelSpec]) -> Validate:
    def validate(data: dict[str, Any], context: dict[str, Any]) -> ModelSpec:
        return spec_type.model_validate(data, context=context)

    return validate


def version_spec(
    base: ModelSpec,
    name: str,
    entry: VersionSpec | Mapping[str, Any],
    *,
    source: str = "<request>",
    plugins: Plugins | None = None,
) -> ModelSpec:
    """The spec of the pool record of ``base``'s version ``name``: ``model@name``.

    The base's fields with ``entry``'s overrides over them, validated as a model of its
    own (backend options too, against ``plugins`` when given); not pinned, no aliases,
    the base's thresholds. A ``ConfigError`` names every problem at
    ``versions.<name>.<key>`` in ``source``.
    """
    overrides, problems = version_overrides(name, entry, base.version)
    spec = None
    if overrides is not None:
        validate = _validator(type(base))
        spec, found = checked(fields_of(base), overrides, set(), validate, plugins=plugins)
        problems.extend(found)
    if problems or spec is None:
        raise version_issues(name, problems, source)
    update = {"id": f"{base.base_id}@{name}", "version": name, "thresholds": base.thresholds}
    made: ModelSpec = spec.model_copy(update=update)
    return made


def record_specs(spec: ModelSpec) -> list[ModelSpec]:
    """One spec per pool record: ``spec`` itself, then each of its other versions."""
    return [
        spec,
        *(
            version_spec(spec, name, entry)
            for name, entry in spec.versions.items()
            if name != spec.version
        ),
    ]


class Config(BaseModel):
    """Everything ``modelpool`` is configured with; build it with ``load``/``from_*``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    """``modelpool serve --ray``: replicas on Ray Serve and their resources."""
    models: dict[ModelId, ModelSpec] = Field(default_factory=dict)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    """Webhooks that health alerts are POSTed to (``modelpool.config.alerts``)."""
    source: str = Field(default="<memory>", exclude=True)
    """Where this config came from: a file path, ``<string>`` or ``<mapping>``."""

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        environ: Mapping[str, str] | None = None,
        *,
        plugins: Plugins | None = PLUGINS,
    ) -> Config:
        """Read a YAML file; ``environ=None`` applies overrides from ``os.environ``. A
        file is checked whole: the model files it names, and backend and strategy
        options against ``plugins`` (the registered ones by default; None: names only)."""
        source = os.fspath(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([ConfigIssue(source, "", "no such file")]) from None
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise ConfigError([ConfigIssue(source, "", f"cannot read: {reason}")]) from None
        environ = os.environ if environ is None else environ
        return cls.from_yaml(text, source, environ, check_files=True, plugins=plugins)

    @classmethod
    def from_yaml(
        cls,
        text: str,
        source: str = "<string>",
        environ: Mapping[str, str] | None = None,
        *,
        check_files: bool = False,
        plugins: Plugins | None = None,
    ) -> Config:
        """Parse YAML text; an empty document is the default config. No env by default.
        ``check_files`` (on for ``load``): the model files it names must exist;
        ``plugins``: the registries to check backend and strategy options with (None:
        plug-in names are checked, nothing is imported)."""
        try:
            loader = yaml.SafeLoader(text)  # raises already for unprintable characters
            try:
                root = loader.get_single_node()
                data = {} if root is None else loader.construct_document(root)
            finally:
                loader.dispose()
        except yaml.YAMLError as error:
            raise ConfigError([yaml_syntax_issue(error, source)]) from None
        issues = duplicate_keys(root, source)
        return _build(
            cls, data, source, environ or {}, root, issues, check_files=check_files, plugins=plugins
        )

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        source: str = "<mapping>",
        environ: Mapping[str, str] | None = None,
        *,
        plugins: Plugins | None = None,
    ) -> Config:
        """Validate already-parsed data (``data`` is not modified). No env by default;
        ``plugins`` as for ``from_yaml``."""
        return _build(cls, data, source, environ or {}, None, [], plugins=plugins)

    @model_validator(mode="before")
    @classmethod
    def _ids_from_keys(cls, data: Any, info: ValidationInfo) -> Any:
        # In YAML a model's id is its key; fill it in so that ModelSpec can require it.
        if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
            return data
        models: dict[Any, Any] = {}
        problems: list[tuple[Loc, str]] = []
        for key, spec in data["models"].items():
            # YAML reads a key like 7 as a number; as an id it is the string "7".
            name = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
            if isinstance(spec, Mapping):
                if "id" in spec and spec["id"] != name:
                    problems.append((("models", name, "id"), _id_mismatch(spec["id"], name)))
                # Validation goes on under the key so the model's other problems show too.
                spec = {**spec, "id": name}
            models[name] = spec
        return report({**data, "models": models}, problems, info)

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> Self:
        return report(self, _cross_field_problems(self, plugins_of(info)), info)


def _cross_field_problems(config: Config, plugins: Plugins | None) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    # Ids first, so that an alias clashing with any id is reported at the alias.
    owner: dict[str, str] = {}
    for key, spec in config.models.items():
        owner[key] = f"the id of model {key!r}"
        if spec.id != key:  # a ModelSpec instance given from Python under another key
            problems.append((("models", key, "id"), _id_mismatch(spec.id, key)))
    for key, spec in config.models.items():
        for index, alias in enumerate(spec.aliases):
            if alias in owner:
                message = f"{alias!r} is already {owner[alias]}; ids and aliases must be unique"
                problems.append((("models", key, "aliases", index), message))
            else:
                owner[alias] = f"an alias of model {key!r}"
    budgets = config.pool.budgets
    if budgets:
        for key, spec in config.models.items():
            devices: list[tuple[Loc, object]] = [(("models", key, "device"), spec.device)]
            devices.extend(
                (("models", key, "versions", name, "device"), entry.overrides.get("device"))
                for name, entry in spec.versions.items()
            )
            for loc, device in devices:
                if device not in (None, "auto") and device not in budgets:
                    message = (
                        f"no budget for device {device!r} in pool.budgets (has: "
                        f"{', '.join(sorted(budgets))}); add one or use device: auto"
                    )
                    problems.append((loc, message))
            problems.extend(_larger_than_budget_problems(key, spec, budgets, plugins))
    for key, spec in config.models.items():
        problems.extend(_spanning_problems(key, spec, budgets, plugins))
    problems.extend(_fallback_problems(config.models, owner))
    defaults = config.health.thresholds
    for key, spec in config.models.items():
        if spec.thresholds is not None:
            values = merged_thresholds(defaults, spec.thresholds)
            found = threshold_problems(values, spec.thresholds.model_fields_set, "from health")
            problems.extend((("models", key, "thresholds", *loc), msg) for loc, msg in found)
    return problems


def _fallback_problems(
    models: Mapping[str, ModelSpec], owner: Mapping[str, str]
) -> list[tuple[Loc, str]]:
    """Each ``fallback`` names another model (by id or alias) that has none of its own."""
    aliases = {alias: key for key, spec in models.items() for alias in spec.aliases}
    problems: list[tuple[Loc, str]] = []
    for key, spec in models.items():
        name = spec.fallback
        if name is None:
            continue
        target = name if name in models else aliases.get(name)
        if target is None:
            known = ", ".join(sorted(models)) or "none"
            message = f"no model {name!r} to fall back to; models: {known}"
        elif target == key:
            message = f"{name!r} is {owner[name]}: a model cannot be its own fallback"
        elif models[target].fallback is not None:
            message = (
                f"{name!r} has a fallback of its own ({models[target].fallback!r}); "
                "fallbacks are one hop: point this one at the last model of the chain"
            )
        else:
            continue
        problems.append((("models", key, "fallback"), message))
    return problems


def _records(
    key: str, spec: ModelSpec, plugins: Plugins | None, *fields: str
) -> list[tuple[Loc, ModelSpec]]:
    """The model and each of its versions that differs from it in one of ``fields``
    (a version that does not repeats the model's problems), with where each is."""
    records: list[tuple[Loc, ModelSpec]] = [(("models", key), spec)]
    for name in spec.versions:
        if name == spec.version:
            continue
        try:
            version = version_spec(spec, name, spec.versions[name], plugins=plugins)
        except ConfigError:
            continue  # the version's own problems are reported at its keys
        if any(getattr(version, field) != getattr(spec, field) for field in fields):
            records.append((("models", key, "versions", name), version))
    return records


def _spanning_problems(
    key: str, spec: ModelSpec, budgets: Mapping[str, int], plugins: Plugins | None
) -> list[tuple[Loc, str]]:
    """``devices`` a model (or version) cannot have: more than one on a backend that
    cannot spread a model (no ``load_across``), or more or others than the budgets."""
    problems: list[tuple[Loc, str]] = []
    for at, record in _records(key, spec, plugins, "devices", "backend"):
        spans = _backend_spans(record.backend, plugins) if record.devices is not None else None
        found = spanning_problems(record.devices, record.backend, spans, budgets)
        problems.extend(((*at, *loc), message) for loc, message in found)
    return problems


def _backend_spans(backend: str, plugins: Plugins | None) -> bool | None:
    """Whether ``backend`` can load one model across devices; None when its code is not
    to be imported (no ``plugins``) or cannot be (a missing optional dependency)."""
    if plugins is None or backend not in plugins.backends.names():
        return None
    try:
        factory = plugins.backends.get(backend)
    except ImportError:
        return None
    return callable(getattr(factory, "load_across", None))


def _larger_than_budget_problems(
    key: str, spec: ModelSpec, budgets: Mapping[str, int], plugins: Plugins | None
) -> list[tuple[Loc, str]]:
    """A model (or version) whose ``memory`` is more than its device's whole budget, or
    than every budget for ``device: auto``, or than its devices' budgets together: no
    eviction could ever make room for it."""
    problems: list[tuple[Loc, str]] = []
    for at, record in _records(key, spec, plugins, "memory", "device", "devices", "backend"):
        if record.memory is None:
            continue
        if record.devices is not None:
            room = capacity(record.devices, budgets)
            if room is None:
                continue  # too few budgets, or a device without one: reported as such
            size, names = room
            where = f"the budgets of {' + '.join(names)} together ({format_size(size)})"
            if record.memory > size:
                message = (
                    f"{format_size(record.memory)} is more than {where}: the model could "
                    "never load; lower memory, span more devices or raise the budgets"
                )
                problems.append(((*at, "memory"), message))
            continue
        if record.device == "auto" and _backend_spans(record.backend, plugins):
            # Too big for any one device, it is spread over as many as it takes.
            total = sum(budgets.values())
            if record.memory > total:
                message = (
                    f"{format_size(record.memory)} is more than every budget together "
                    f"({format_size(total)}): the model could never load; lower memory or "
                    "raise the budgets"
                )
                problems.append(((*at, "memory"), message))
            continue
        if record.device == "auto":
            device = max(budgets, key=lambda name: budgets[name])
            where = f"the largest budget ({device}: {format_size(budgets[device])})"
        elif record.device in budgets:
            device = record.device
            where = f"the whole {device} budget ({format_size(budgets[device])})"
        else:
            continue  # no budget for the device: reported above
        if record.memory > budgets[device]:
            message = (
                f"{format_size(record.memory)} is more than {where}: the model could never "
                "load; lower memory or raise the budget"
            )
            problems.append(((*at, "memory"), message))
    return problems


def _id_mismatch(given: object, key: str) -> str:
    return f"id {given!r} disagrees with its key {key!r}; drop 'id' or make them equal"


def _known_keys(loc: Loc) -> list[str]:
    if not loc:
        return [name for name in Config.model_fields if name != "source"]
    sections: dict[Loc, type[BaseModel]] = {
        ("server",): ServerSettings,
        ("server", "tls"): TlsSettings,
        ("pool",): PoolSettings,
        ("health",): HealthSettings,
        ("cluster",): ClusterSettings,
        ("health", "thresholds"): ThresholdSettings,
        ("alerts",): AlertSettings,
    }
    if len(loc) == 3 and loc[0] == "models" and loc[2] == "thresholds":
        return list(ThresholdSettings.model_fields)
    if len(loc) == 3 and loc[:2] == ("alerts", "webhooks"):
        return list(WebhookSettings.model_fields)
    model = sections.get(loc)
    return list(model.model_fields) if model is not None else []


def _build(
    cls: type[Config],
    data: object,
    source: str,
    environ: Mapping[str, str],
    root: yaml.Node | None,
    issues: list[ConfigIssue],
    *,
    check_files: bool = False,
    plugins: Plugins | None = None,
) -> Config:
    if not isinstance(data, Mapping):
        message = f"expected a mapping with server, pool and models at the top, got {shown(data)}"
        raise ConfigError([*issues, ConfigIssue(source, "", message, line_of(root, ()) or 1)])
    raw = dict(data)
    if "source" in raw:
        # 'source' records where a config came from; a file cannot claim another origin.
        message = unknown_key_message("source", _known_keys(()))
        issues.append(ConfigIssue(source, "source", message, line_of(root, ("source",))))
        del raw["source"]
    overrides, env_issues = apply_env_overrides(raw, environ)
    issues.extend(env_issues)
    sink: list[tuple[Loc, str]] = []
    problems: list[tuple[Loc, str]] = []
    config = None
    try:
        context = {SINK: sink, CHECK_FILES: check_files, ENVIRON: environ, PLUGINS_KEY: plugins}
        config = cls.model_validate(raw, context=context)
    except ValidationError as error:
        problems = [describe(detail, _known_keys) for detail in error.errors(include_url=False)]
    # Problems from the sink (backend options, cross-field checks) are found even when
    # other parts failed, so the file's author sees everything in one go.
    problems.extend(sink)
    issues.extend(_issue(loc, message, source, root, overrides) for loc, message in problems)
    if issues or config is None:
        # In file order, then the env variables' issues (which have no line).
        issues.sort(key=lambda issue: (issue.source != source, issue.line or 0))
        raise ConfigError(issues)
    return config.model_copy(update={"source": source})


def _issue(
    loc: Loc, message: str, source: str, root: yaml.Node | None, overrides: list[Override]
) -> ConfigIssue:
    var = override_for(loc, overrides)
    if var is not None:
        return ConfigIssue(var, dotted(loc), message)
    line = None
    if len(loc) > 2 and loc[0] == "models":
        # A backend option may be written flat or under 'options:'; look in both places,
        # in the model or in one of its versions.
        at = 4 if len(loc) > 4 and loc[2] == "versions" else 2
        line = line_of(root, loc, exact=True) or line_of(root, (*loc[:at], "options", *loc[at:]))
    return ConfigIssue(source, dotted(loc), message, line or line_of(root, loc))
