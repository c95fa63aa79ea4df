"""Property tests: random interleavings of requests, releases, loads, unloads, time and
config reloads (a model's settings replaced, a model removed).

After every step the books must balance and the rules hold: never over budget, a
leased model (or copy of a model with replicas) never unloading, at most one member
of an exclusive group on a device, no copy above ``max_concurrent`` nor a model above
its replicas' ``max`` or ``max_queue``, and after stop everything returns to zero.
"""

from __future__ import annotations

from typing import ClassVar

from harness import GB, REMOTE, Harness
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from modelpool.core.lease import Lease, Waiter
from modelpool.core.slots import counts_toward
from modelpool.core.states import RESIDENT, ModelState
from modelpool.errors import DoesNotFit, LoadFailed, QueueFull, UnknownModel
from modelpool.plugins import POLICIES

MODELS = {
    "a": {"memory": 4 * GB},
    "b": {"memory": 3 * GB, "ttl": 30},
    "c": {"memory": 5 * GB, "device": "auto"},
    "x": {"memory": 4 * GB, "group": "heavy", "device": "gpu:0"},
    "y": {"memory": 5 * GB, "group": "heavy", "device": "gpu:0"},
    "p": {"memory": 2 * GB, "pinned": True},
    "big": {"memory": 11 * GB, "device": "auto"},
    "far": REMOTE,  # booked with no bytes wherever the pool puts it
    # Served by one to three copies (r#1..r#3), two requests at a time each.
    "r": {
        "memory": 2 * GB,
        "device": "auto",
        "replicas": {"min": 1, "max": 3, "target_inflight": 1},
        "max_concurrent": 2,
        "max_queue": 6,
    },
}
COPY = "r#2"
"""Requests ask for every model, and for this copy of ``r`` by its own id."""

KEPT = ("p", "big", "far")
"""Models the reload rules leave alone: the pinned and remote ones never unload but by
request or stop (an invariant below), and ``big`` never fits."""


class PoolMachine(RuleBasedStateMachine):
    policy = "hybrid"
    models: ClassVar[dict[str, dict[str, object]]] = MODELS
    limits: ClassVar[dict[str, object]] = {}
    """max_models and watermarks, set by a variant below."""

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(
            MODELS,
            budgets={"cpu": 10 * GB, "gpu:0": 8 * GB},
            policy=self.policy,
            starvation_limit=5.0,
            max_queue=20,
            warm_budget=7 * GB,
            offloadable=("a", "c", "x", "big", "r#2"),  # big never fits the warm tier
            **self.limits,
        )
        self.leases: list[Lease] = []
        self.waiters: list[Waiter] = []
        self.seen: set[int] = set()
        self.retired: dict[str, Waiter] = {}
        """Models a reload removed, with the waiter answered once they hold nothing."""

    def _collect(self) -> None:
        for waiter_id, lease in self.h.fx.granted.items():
            if waiter_id not in self.seen:
                self.seen.add(waiter_id)
                if lease is not None:
                    self.leases.append(lease)

    @rule(pick=st.integers(min_value=0, max_value=63))
    def request(self, pick: int) -> None:
        names = sorted([*self.models, COPY] if "r" in self.models else self.models)
        model = names[pick % len(names)]
        self._ask(model)

    def _ask(self, model: str) -> None:
        try:
            result = self.h.request(model)
        except (DoesNotFit, QueueFull, LoadFailed):  # LoadFailed: backing off after failures
            return
        except UnknownModel:  # a reload removed it (or the model this copy is of)
            assert model.partition("#")[0] in self.retired
            return
        if isinstance(result, Lease):
            self.leases.append(result)
        else:
            self.waiters.append(result)
        self._collect()

    @rule(count=st.integers(min_value=2, max_value=5))
    def burst(self, count: int) -> None:
        # Several requests for the model with replicas at once: copies start and fill.
        if "r" in self.models:
            for _ in range(count):
                self._ask("r")

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        live = [lease for lease in self.leases if not lease.released]
        if live:
            self.h.s.release(data.draw(st.sampled_from(live)), ok=data.draw(st.booleans()))
            self._collect()

    @rule(data=st.data(), ok=st.booleans())
    def finish_load(self, data: st.DataObject, ok: bool) -> None:
        started = [
            r.model_id
            for r in self.h.s.records()
            if r.state is ModelState.LOADING and r.load_started
        ]
        if started:
            model = data.draw(st.sampled_from(started))
            self.h.finish_load(model) if ok else self.h.fail_load(model)
            self._collect()

    @rule(data=st.data())
    def finish_unload(self, data: st.DataObject) -> None:
        leaving = self.h.in_flight()["unload"]
        if leaving:
            self.h.finish_unload(data.draw(st.sampled_from(leaving)))
            self._collect()

    @rule(data=st.data(), ok=st.booleans(), smaller=st.booleans())
    def finish_offload(self, data: st.DataObject, ok: bool, smaller: bool) -> None:
        # ``smaller``: the warm copy books less than was reserved for it (a llama.cpp
        # model's file kept in the page cache, without the server's other memory).
        offloading = self.h.in_flight()["offload"]
        if offloading:
            model = data.draw(st.sampled_from(offloading))
            reserved = self.h.s.warm.account.reserved.get(model, 0)
            footprint = reserved // 2 if smaller and reserved > 1 else None
            self.h.finish_offload(model, ok, footprint)
            self._collect()

    @rule(data=st.data())
    def model_dies(self, data: st.DataObject) -> None:
        ready = [r for r in self.h.s.records() if r.state is ModelState.READY]
        if ready:
            record = data.draw(st.sampled_from(ready))
            assert record.handle is not None
            self.h.s.on_lost(record.model_id, record.handle, "exited with code 1")
            self._collect()

    @rule(data=st.data())
    def warm_copy_dies(self, data: st.DataObject) -> None:
        # A sleeping server process exits: its host copy vanishes on its own.
        warm = [r for r in self.h.s.records() if r.state is ModelState.WARM and r.warm]
        if warm:
            record = data.draw(st.sampled_from(warm))
            assert record.warm is not None
            self.h.s.on_lost(record.model_id, record.warm, "exited while asleep")
            self._collect()

    @rule(data=st.data(), memory=st.sampled_from([1, 2, 3, 5]))
    def reload_changes_a_model(self, data: st.DataObject, memory: int) -> None:
        # A config reload gives a model new settings that need a fresh load (not the
        # pinned or the remote one: the rules say they never unload but by request).
        # A model with replicas changes by a restart (config/diff.py): never replaced.
        live = [
            m
            for m in self.models
            if m not in KEPT and m not in self.retired and self.h.s.replica_set(m) is None
        ]
        if live:
            model = data.draw(st.sampled_from(live))
            spec = self.h.s.resolve(model).spec.model_copy(update={"memory": memory * GB})
            self.h.s.replace_model(spec, memory * GB)
            self._collect()

    @rule(data=st.data())
    def reload_removes_a_model(self, data: st.DataObject) -> None:
        live = [m for m in self.models if m not in KEPT and m not in self.retired]
        if len(live) > 2:
            model = data.draw(st.sampled_from(live))
            self.retired[model] = self.h.s.retire(model)
            self._collect()

    @rule()
    def forget_what_left(self) -> None:
        for model, waiter in self.retired.items():
            copies = [
                r for r in self.h.s.records() if r.model_id.partition("#")[0] == model
            ]  # the model's one record, or each of its copies
            if waiter.waiter_id in self.h.fx.granted and copies:
                for record in copies:
                    assert record.state not in RESIDENT
                    assert not record.leases
                self.h.s.remove_model(model)

    @rule(seconds=st.floats(min_value=0.5, max_value=40))
    def time_passes(self, seconds: float) -> None:
        self.h.clock.advance(seconds)
        self.h.s.on_tick()
        self._collect()

    @rule(data=st.data(), expire=st.booleans())
    def give_up(self, data: st.DataObject, expire: bool) -> None:
        pending = [
            w
            for w in self.waiters
            if w.waiter_id not in self.h.fx.granted and w.waiter_id not in self.h.fx.rejected
        ]
        if pending:
            waiter = data.draw(st.sampled_from(pending))
            self.h.s.expire(waiter) if expire else self.h.s.cancel(waiter)
            self._collect()

    @invariant()
    def books_balance(self) -> None:
        for account in self.h.s.ledger:
            staying = account.committed_total - account.leaving_total
            assert staying + account.reserved_total <= account.budget, account
            assert account.committed_total + account.started_total <= account.budget, account
            assert account.committed_total == sum(account.committed.values())
            assert account.reserved_total == sum(account.reserved.values())
        for record in self.h.s.records():
            # Every part of a model spread over devices is booked, or none is.
            accounts = [self.h.s.ledger.account(d) for d in record.devices]
            assert (record.device is None) == (not accounts), record.model_id
            if accounts:
                assert record.device == record.devices[0]
            for account in accounts:
                if record.state in (ModelState.READY, ModelState.UNLOADING):
                    assert record.model_id in account.committed
                elif record.state is ModelState.LOADING:
                    assert record.model_id in account.reserved
                    assert (record.model_id in account.started) == record.load_started
                assert self.h.s.residents(account.device)[record.model_id] is record
            if record.state not in RESIDENT:
                assert record.device is None
        booked = sum(len(self.h.s.residents(d)) for d in self.h.s.ledger.devices())
        assert booked == sum(len(r.devices) for r in self.h.s.records())

    @invariant()
    def warm_books_balance(self) -> None:
        warm = self.h.s.warm.account
        assert (warm.committed_total - warm.leaving_total) + warm.reserved_total <= warm.budget
        assert warm.committed_total + warm.started_total <= warm.budget
        for record in self.h.s.records():
            model_id = record.model_id
            assert (model_id in warm.reserved) == record.offloading, model_id
            if record.offloading:
                assert record.state is ModelState.UNLOADING
            assert (model_id in warm.committed) == (record.warm is not None), model_id
            assert (model_id in warm.leaving) == record.warm_dropping, model_id
            if record.warm_dropping:  # a copy being freed is never being restored
                assert record.state is ModelState.WARM, (model_id, record.state)
            if record.warm is not None:  # WARM, or being restored from it
                assert record.state in (ModelState.WARM, ModelState.LOADING), record.state
            else:
                assert record.state is not ModelState.WARM

    @invariant()
    def leased_models_are_never_evicted(self) -> None:
        for record in self.h.s.records():
            if record.leases:
                assert record.state is ModelState.READY, record.model_id
        unloaded = set(self.h.fx.unloads)
        assert "p" not in unloaded or self.h.s.stopping  # pinned: only an explicit unload
        assert "far" not in unloaded or self.h.s.stopping  # remote: frees nothing by leaving

    @invariant()
    def copies_keep_their_limits(self) -> None:
        if "r" not in self.models or not any(
            r.model_id.startswith("r#") for r in self.h.s.records()
        ):
            return  # not in this machine, or a reload removed it
        copies = self.h.s.copies("r")
        for record in copies:
            assert len(record.leases) <= 2, record.model_id  # max_concurrent
        active = [c for c in copies if c.state in (ModelState.LOADING, ModelState.READY)]
        assert len(active) <= 3
        assert sum(len(c.waiters) for c in copies) <= 6  # max_queue

    @invariant()
    def one_heavy_model_at_a_time(self) -> None:
        present = [
            r.model_id
            for r in self.h.s.records()
            if r.spec.group == "heavy"
            and r.state in RESIDENT
            and (r.state is not ModelState.LOADING or r.load_started)
        ]
        assert len(present) <= 1, present

    @invariant()
    def never_more_loaded_than_a_cap(self) -> None:
        loaded = [r for r in self.h.s.records() if counts_toward(r)]
        pool_cap = self.h.s.settings.max_models
        assert pool_cap is None or len(loaded) <= pool_cap, [r.model_id for r in loaded]
        for device, cap in self.h.s.settings.device_max_models.items():
            on_device = [r.model_id for r in loaded if r.device == device]
            assert len(on_device) <= cap, on_device

    @invariant()
    def queue_count_is_exact(self) -> None:
        assert self.h.s.waiting == sum(len(r.waiters) for r in self.h.s.records())

    def teardown(self) -> None:
        self.h.s.stop()
        for lease in self.leases:
            self.h.s.release(lease)
        self.h.settle()
        assert self.h.s.ledger.is_empty()
        assert all(r.state not in RESIDENT for r in self.h.s.records())
        for account in [*self.h.s.ledger, self.h.s.warm.account]:
            assert account.reserved_total == account.committed_total == 0
        assert all(r.warm is None for r in self.h.s.records())


def machine_for(policy: str) -> type[PoolMachine]:
    """The same rules under another eviction policy: no policy may break the books."""
    return type(f"PoolMachine_{policy}", (PoolMachine,), {"policy": policy})


SETTINGS = settings(
    stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestPoolInvariants = PoolMachine.TestCase
LIMITS = {"max_models": 3, "device_max_models": {"gpu:0": 1}, "high_watermark": 0.7}
TestPoolInvariantsCapped = type("CappedPoolMachine", (PoolMachine,), {"limits": LIMITS}).TestCase
TestPoolInvariantsCapped.settings = settings(SETTINGS, max_examples=200)
TestPoolInvariants.settings = settings(SETTINGS, max_examples=200)
for _name in POLICIES.names():
    _case = machine_for(_name).TestCase
    _case.settings = settings(SETTINGS, max_examples=25)
    globals()[f"TestPoolInvariants_{_name}"] = _case
del _case, _name
