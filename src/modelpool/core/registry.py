"""The pool's models by name: every record, and every name that reaches one.

A model answers to its id, its aliases and ``base@version``. A model with replicas is
several records, one per copy (``id#1``, ``id#2``...), each answering to its own id; the
model's names resolve to the first copy and route through its ``ReplicaSet``. A model a
reload removed is *retired*: its names are gone, it takes no new requests, and it is
forgotten once it has unloaded.

The scheduler owns the one ``ModelRegistry`` of a pool and changes it only from its own
loop; the registry decides nothing about memory or requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, ValuesView

from modelpool.config import ModelSpec
from modelpool.core.record import ModelRecord
from modelpool.core.replicas import ReplicaSet
from modelpool.errors import UnknownModel
from modelpool.types import Bytes, ModelId


class ModelRegistry:
    """Records by id, names to ids, the copies of each model with replicas, the retired."""

    def __init__(self) -> None:
        self._records: dict[ModelId, ModelRecord] = {}
        self._names: dict[str, ModelId] = {}
        # Models served by several copies: by the model's names, and by each copy's id.
        self._set_names: dict[str, ReplicaSet] = {}
        self._set_of: dict[ModelId, ReplicaSet] = {}
        self._sets_by_id: dict[ModelId, ReplicaSet] = {}
        self._retired: set[ModelId] = set()

    # --- records by id ----------------------------------------------------------------

    def __getitem__(self, model_id: ModelId) -> ModelRecord:
        return self._records[model_id]

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._records

    def __iter__(self) -> Iterator[ModelId]:
        return iter(self._records)

    def get(self, model_id: ModelId) -> ModelRecord | None:
        return self._records.get(model_id)

    def values(self) -> ValuesView[ModelRecord]:
        """Every record, in config order: one per model, one per copy of a model with
        replicas."""
        return self._records.values()

    # --- names --------------------------------------------------------------------------

    def resolve(self, name: str) -> ModelRecord:
        """The record for a model id or alias; ``UnknownModel`` otherwise."""
        model_id = self._names.get(name)
        if model_id is None:
            raise UnknownModel(name, list(self._records))
        return self._records[model_id]

    def in_service(self, name: str) -> ModelRecord:
        """``resolve``, refusing a model a reload removed (it only unloads now)."""
        record = self.resolve(name)
        if record.model_id in self._retired:
            raise UnknownModel(name, self.in_service_ids())
        return record

    def in_service_ids(self) -> list[ModelId]:
        return [m for m in self._records if m not in self._retired]

    def names_taken(self, spec: ModelSpec) -> list[str]:
        """The names ``spec`` would answer to that another model already has."""
        return [n for n in _names_of(spec) if n in self._names]

    # --- models served by several copies --------------------------------------------

    def copies(self, name: str) -> list[ModelRecord]:
        """The records that serve ``name``: every copy of a model with replicas
        (``id#1`` first), else the one record it names."""
        replica_set = self._set_names.get(name)
        if replica_set is None:
            return [self.resolve(name)]
        return [self._records[member] for member in replica_set.members]

    def replica_set(self, name: str) -> ReplicaSet | None:
        """The copies ``name`` (a model's name, or one copy's id) belongs to; None for a
        model served by one record."""
        return self._set_names.get(name) or self._set_of.get(name)

    def set_named(self, name: str) -> ReplicaSet | None:
        """The copies of the model ``name`` names (a model's name, not a copy's id)."""
        return self._set_names.get(name)

    def set_of(self, model_id: ModelId) -> ReplicaSet | None:
        """The copies the record ``model_id`` is one of (None: a model of one record)."""
        return self._set_of.get(model_id)

    def replica_sets(self) -> list[ReplicaSet]:
        """Every model with replicas."""
        return list(self._sets_by_id.values())

    def model_id_of(self, name: str) -> ModelId:
        """The id of the model ``name`` names: a copy's id names its model too."""
        replica_set = self.replica_set(name)
        return replica_set.model_id if replica_set is not None else self.resolve(name).model_id

    def model_spec(self, name: str) -> ModelSpec:
        """The spec of the model ``name`` names (the model's, not a copy's)."""
        replica_set = self.replica_set(name)
        return replica_set.spec if replica_set is not None else self.resolve(name).spec

    def models(self) -> dict[ModelId, ModelSpec]:
        """Every model by id, in config order: the copies of a model count once."""
        found: dict[ModelId, ModelSpec] = {}
        for record in self._records.values():
            replica_set = self._set_of.get(record.model_id)
            if replica_set is None:
                found[record.model_id] = record.spec
            else:
                found.setdefault(replica_set.model_id, replica_set.spec)
        return found

    def siblings(self, record: ModelRecord) -> list[ModelRecord]:
        """The copies ``record`` is one of (itself alone for a model of one copy)."""
        replica_set = self._set_of.get(record.model_id)
        if replica_set is None:
            return [record]
        return [self._records[member] for member in replica_set.members]

    # --- changes ------------------------------------------------------------------------

    def add(self, spec: ModelSpec, estimate: Bytes) -> ModelRecord:
        """The record of ``spec`` (the first copy's, for a model with replicas), under
        every name it answers to. The caller has checked ``names_taken``."""
        replica_set = ReplicaSet.of(spec)
        names = _names_of(spec)
        if replica_set is None:
            record = self._records[spec.id] = ModelRecord(spec, estimate, pinned=spec.pinned)
            # A version answers to ``model@version`` too; the base version's id is the plain id.
            for name in names:
                self._names[name] = spec.id
            return record
        # Every copy is a record of its own (``id#1``...), answering to its own id; the
        # model's names resolve to the first copy and route through the set.
        for number, member in enumerate(replica_set.members, start=1):
            copy = replica_set.member_spec(number)
            self._records[member] = ModelRecord(copy, estimate, pinned=copy.pinned)
            self._names[member] = member
            self._set_of[member] = replica_set
        self._sets_by_id[spec.id] = replica_set
        for name in names:
            self._names[name] = replica_set.members[0]
            self._set_names[name] = replica_set
        return self._records[replica_set.members[0]]

    def forget(self, model_id: ModelId, copies: Iterable[ModelRecord]) -> None:
        """Drop the model ``model_id`` (whose records are ``copies``) and every name of it."""
        gone = set()
        for record in copies:
            gone.add(record.model_id)
            self._retired.discard(record.model_id)
            del self._records[record.model_id]
            self._set_of.pop(record.model_id, None)
        for alias, named in list(self._names.items()):
            if named in gone:
                del self._names[alias]
                self._set_names.pop(alias, None)
        self._sets_by_id.pop(model_id, None)
        for alias in [n for n, rs in self._set_names.items() if rs.model_id == model_id]:
            del self._set_names[alias]  # names a retire left routing to the copies

    def retire(self, model_id: ModelId, copies: Iterable[ModelRecord]) -> None:
        """Take the model out of service for good: its aliases are free at once; a copy
        keeps its own id, and the model's id keeps naming its copies, until ``forget``."""
        members = {c.model_id for c in copies}
        self._retired.update(members)
        for alias in [n for n, m in self._names.items() if m in members and n not in members]:
            del self._names[alias]
            if alias != model_id:
                self._set_names.pop(alias, None)

    def rename(self, specs: Iterable[ModelSpec]) -> None:
        """Give each model the names its new spec asks for, all in one step (two models
        may trade an alias); a name another model keeps is a ``ValueError`` before
        anything changes. A model with replicas keeps routing its names to its copies."""
        pairs = [(self._holder_of(spec.id), spec) for spec in specs]
        changing = {holder for holder, _ in pairs}
        kept = {n: m for n, m in self._names.items() if m not in changing or n == m}
        taken = [
            alias
            for holder, spec in pairs
            for alias in spec.aliases
            if kept.get(alias, holder) != holder
        ]
        if taken:
            raise ValueError(f"{', '.join(map(repr, taken))} already names a model")
        self._names = kept
        for holder, spec in pairs:
            own = (spec.id, f"{spec.base_id}@{spec.version}")
            for alias in spec.aliases:
                self._names[alias] = holder
            for name in own:
                self._names.setdefault(name, holder)
            replica_set = self._set_names.get(spec.id)
            if replica_set is not None:
                for name in [n for n, named in self._set_names.items() if named is replica_set]:
                    del self._set_names[name]
                for name in (*own, *spec.aliases):
                    self._set_names[name] = replica_set

    def _holder_of(self, model_id: ModelId) -> ModelId:
        """The record the model's names resolve to (its first copy, with replicas)."""
        replica_set = self._set_names.get(model_id)
        return (
            replica_set.members[0] if replica_set is not None else self.resolve(model_id).model_id
        )

    def respec_set(self, replica_set: ReplicaSet, spec: ModelSpec) -> ReplicaSet:
        """The model with replicas takes ``spec`` as its own (its copies' specs are the
        caller's to change): the set that replaces ``replica_set``."""
        changed = dataclasses.replace(replica_set, spec=spec)
        for member in changed.members:
            self._set_of[member] = changed
        self._sets_by_id[changed.model_id] = changed
        for alias, named in list(self._set_names.items()):
            if named is replica_set:
                self._set_names[alias] = changed
        return changed


def _names_of(spec: ModelSpec) -> tuple[str, ...]:
    return (spec.id, *spec.aliases, f"{spec.base_id}@{spec.version}")
