"""Applying a config diff (``config/diff.py``) to a running pool, through its public
methods only.

Everything that can change at once changes in one step of the pool's loop, so no
request sees half a config, in this order: the live settings; the removed models taken
out of service (first, as their aliases may have moved to another model); the metadata
of every updated model (and of every reloaded one: its aliases, tags and priority do
not wait); the new models added; the reloaded ones marked to unload.
Then it waits for the slow part: removed models unloading once their leases are back
(then forgotten), reloaded ones unloading and, if they were loaded, loading again with
their new settings. Unchanged models are never touched: their leases and requests go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from modelpool.config.diff import ConfigDiff
from modelpool.core.pool import ModelPool
from modelpool.core.states import RESIDENT
from modelpool.errors import ConfigError, ConfigIssue, ModelPoolError

log = logging.getLogger("modelpool.reload")


async def apply_diff(
    pool: ModelPool, diff: ConfigDiff, on_applied: Callable[[], None] | None = None
) -> list[str]:
    """Apply ``diff`` to ``pool``; the problems met on the way (a reloaded model that
    failed to load again...), each naming its model. A ``ConfigError`` (a device with
    no budget, a model with no memory estimate, a name still held by a model on its
    way out) is raised before anything changes. ``on_applied`` is called right after
    the immediate step (what follows the pool's models: routes, versions). Call on the
    pool's loop."""
    check(pool, diff)
    # --- at once: one step of the loop ----------------------------------------------
    pool.reconfigure(diff.pool_settings)
    removals = [pool.retire_model(model_id) for model_id in diff.removed]  # frees aliases
    metadata = [change.spec for change in diff.updated]
    metadata += [change.metadata_now for change in diff.reloaded]
    if metadata:
        pool.update_models(metadata)
    for spec in diff.added:
        pool.add_model(spec)
    was_resident = {c.model_id for c in diff.reloaded if pool.state(c.model_id) in RESIDENT}
    replacements = {change.model_id: pool.replace_model(change.spec) for change in diff.reloaded}
    if on_applied is not None:
        on_applied()

    # --- then the slow part ------------------------------------------------------------
    problems: list[str] = []
    loads = [
        _load_again(pool, model_id, task, model_id in was_resident)
        for model_id, task in replacements.items()
    ]
    loads += [_load_pinned(pool, spec.id) for spec in diff.added if spec.pinned]
    loads += [
        _load_pinned(pool, change.model_id)
        for change in diff.updated
        if change.spec.pinned and not change.old.pinned
    ]
    # Preloads wait for a quiet moment, however long: started, not waited for.
    for spec in diff.added:
        pool.start_configured_preload(spec.id)
    for change in diff.updated:
        if (
            change.spec.preload != change.old.preload
            and pool.state(change.model_id) not in RESIDENT
        ):
            pool.start_configured_preload(change.model_id)
    for outcome in await asyncio.gather(*removals, *loads, return_exceptions=True):
        if isinstance(outcome, str):
            problems.append(outcome)
        elif isinstance(outcome, BaseException):
            problems.append(f"{type(outcome).__name__}: {outcome}")
    return problems


def check(pool: ModelPool, diff: ConfigDiff) -> None:
    """The ``ConfigError`` applying ``diff`` would run into, before anything changes."""
    for spec in [*diff.added, *(change.spec for change in diff.reloaded)]:
        pool.check_model(spec)
    leaving = set(diff.removed)
    issues = [
        ConfigIssue(
            diff.running.source,
            f"models.{spec.id}.aliases",
            f"{alias!r} is the id of a model this reload removes, which answers to it until "
            "it has unloaded: give the alias in a later reload",
        )
        for spec in [*diff.added, *(c.spec for c in (*diff.updated, *diff.reloaded))]
        for alias in spec.aliases
        if alias in leaving
    ]
    if issues:
        raise ConfigError(issues)


async def _load_again(
    pool: ModelPool, model_id: str, replaced: asyncio.Task[None], was_resident: bool
) -> str | None:
    """Wait until the new settings are in force; load the model again if it was loaded."""
    await replaced
    if not was_resident:
        return None
    try:
        await pool.load(model_id)
    except ModelPoolError as error:
        log.warning("%s did not load again with its new settings: %s", model_id, error)
        return f"{model_id}: did not load again with its new settings: {error}"
    return None


async def _load_pinned(pool: ModelPool, model_id: str) -> str | None:
    """A model the reload pinned is loaded, as pinned models are at start."""
    try:
        await pool.load(model_id)
    except ModelPoolError as error:
        return f"{model_id}: pinned, but did not load: {error}"
    return None
