"""``Reloader``: the server reads its config file again, and applies what changed.

Three ways in, one path: ``POST /admin/reload`` (and ``modelpool reload``), SIGHUP to
the server process, and ``serve --watch`` (the file is looked at every
``WATCH_SECONDS``; a change of its content starts a reload). Each reload:

1. reads and validates the file as ``serve`` did at start (``Config.load``, the same
   plug-ins, ``MODELPOOL_*`` overrides from the environment). A file with problems
   changes nothing: every problem (file, line, key) is in the answer and the log;
   An empty file is refused too (it would remove every model);
2. compares it with the config the pool runs (``config/diff.py``) and applies the
   difference (``core/reload.py``): unchanged models are not touched;
3. publishes one ``config_reloaded`` event and writes one audit line, with the diff.

Reloads run one at a time: a second one waits for the first to finish, then compares
the file with what the first left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from modelpool.config import Config, merged_thresholds
from modelpool.config.diff import ConfigDiff, diff_configs
from modelpool.core.events import EventKind
from modelpool.core.pool import ModelPool
from modelpool.core.reload import apply_diff
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.http.audit import NO_KEY, AuditLog, Caller
from modelpool.monitor.health import Thresholds
from modelpool.plugins import PLUGINS
from modelpool.rollout import RolloutManager

log = logging.getLogger("modelpool.reload")
T = TypeVar("T")

OPERATION = "reload"
"""The reload's name in the audit log."""
WATCH_SECONDS = 0.25
"""How often ``serve --watch`` looks at the file: a saved change applies within a second."""


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did: applied (with its diff), or refused (with every issue)."""

    source: str
    origin: str
    """Who asked: ``http``, ``sighup`` or ``watch``."""
    diff: ConfigDiff | None = None
    issues: list[ConfigIssue] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What went wrong while applying (a reloaded model that did not load again)."""

    @property
    def ok(self) -> bool:
        return self.diff is not None

    def summary(self) -> dict[str, Any]:
        """The outcome as plain data: the HTTP answer, the event, the audit line."""
        shown: dict[str, Any] = {"ok": self.ok, "source": self.source, "origin": self.origin}
        if self.diff is not None:
            shown |= {"changed": not self.diff.empty, **self.diff.summary()}
            shown["problems"] = list(self.problems)
        else:
            shown["issues"] = [issue_data(issue) for issue in self.issues]
        return shown


def issue_data(issue: ConfigIssue) -> dict[str, Any]:
    """One config problem as JSON: where (file, line, key) and what, and the whole line."""
    return {
        "source": issue.source,
        "line": issue.line,
        "path": issue.path,
        "message": issue.message,
        "text": str(issue),
    }


class Reloader:
    """Reads ``config``'s file again on demand, on SIGHUP, or when it changes (``watch``)."""

    def __init__(
        self,
        pool: ModelPool,
        config: Config,
        *,
        rollouts: RolloutManager | None = None,
        audit: AuditLog | None = None,
        watch: bool = False,
        sighup: bool = False,
    ) -> None:
        """``config``: the config the pool was built from; its ``source`` must be a file.
        ``rollouts``: the versions, routes and health thresholds that follow the models;
        ``audit``: where each reload is recorded. ``watch``: reload when the file
        changes; ``sighup``: reload on SIGHUP (the process's main thread only: the
        server's)."""
        path = Path(config.source)
        if not path.is_file():
            raise ValueError(f"{config.source}: not a file the config can be read again from")
        self.path = path.resolve()
        self.config = config
        """The config the pool runs (a change that waits for a restart: as it runs)."""
        self._pool, self._rollouts, self._audit = pool, rollouts, audit
        self._watch, self._sighup = watch, sighup
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Install the SIGHUP handler and start watching, as asked. Call on the loop."""
        self._loop = asyncio.get_running_loop()
        if self._sighup:
            self._loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        if self._watch:
            self._spawn(self._watch_file())
            log.info("watching %s: a change is applied within a second", self.path)

    async def stop(self) -> None:
        """Stop listening and watching; a reload under way is cancelled."""
        if self._loop is not None and self._sighup:
            self._loop.remove_signal_handler(signal.SIGHUP)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reading %s again", self.path)
        self._spawn(self._reload_quietly("sighup"))

    async def _reload_quietly(self, origin: str) -> None:
        try:
            await self.reload(origin)
        except Exception:  # logged with its trace; the server goes on with its config
            log.exception("the %s reload of %s failed", origin, self.path)

    # --- one reload ---------------------------------------------------------------------

    async def reload(self, origin: str = "http", caller: Caller | None = None) -> ReloadOutcome:
        """Read the file, validate it, apply the difference; after any reload under way.
        A caller that goes away (a client's timeout) does not cut a reload short: it runs
        to its end, and its event and audit line say how it went."""
        task = self._spawn(self._locked(origin, caller or Caller(origin, NO_KEY)))
        return await asyncio.shield(task)

    async def _locked(self, origin: str, caller: Caller) -> ReloadOutcome:
        async with self._lock:
            return await self._reload(origin, caller)

    async def _reload(self, origin: str, caller: Caller) -> ReloadOutcome:
        source = str(self.path)
        try:
            new = await asyncio.to_thread(_load, self.path)
            diff = diff_configs(self.config, new)
            self._check_versions(diff)
            problems = await apply_diff(self._pool, diff, lambda: self._follow(diff))
        except ConfigError as error:
            return self._refused(ReloadOutcome(source, origin, issues=error.issues), caller)
        outcome = ReloadOutcome(source, origin, diff, problems=problems)
        summary = outcome.summary()
        self._pool.publish(EventKind.CONFIG_RELOADED, None, **summary)
        if self._audit is not None:
            asked = {"origin": origin, "file": source}
            self._audit.record(OPERATION, caller, asked, 200, result=summary)
        changes = ", ".join(
            f"{name} {len(value)}" for name, value in diff.summary().items() if value
        )
        log.info("reloaded %s (%s): %s", source, origin, changes or "nothing changed")
        for key in diff.needs_restart:
            log.warning("%s: %s changed; it needs a restart to apply", source, key)
        for problem in problems:
            log.warning("reload: %s", problem)
        return outcome

    def _refused(self, outcome: ReloadOutcome, caller: Caller) -> ReloadOutcome:
        count = len(outcome.issues)
        message = f"{outcome.source}: not applied, {count} problem{'s' * (count != 1)}"
        log.error("%s; the running config stays", message)
        for issue in outcome.issues:
            log.error("  %s", issue)
        summary = outcome.summary()
        self._pool.publish(EventKind.CONFIG_RELOADED, None, **summary)
        if self._audit is not None:
            asked = {"origin": outcome.origin, "file": outcome.source}
            self._audit.record(OPERATION, caller, asked, 422, message, summary)
        return outcome

    def _check_versions(self, diff: ConfigDiff) -> None:
        """A model taken out of the file keeps the versions registered for it at run
        time: refuse that, naming them (``modelpool unregister`` them first)."""
        if self._rollouts is None:
            return
        issues = []
        for model_id in diff.removed:
            versions = self._rollouts.runtime_versions(model_id)
            if versions:
                message = (
                    f"removed from the file, but versions registered at run time remain "
                    f"({', '.join(versions)}): unregister them first (modelpool unregister "
                    f"{model_id} VERSION)"
                )
                issues.append(ConfigIssue(str(self.path), f"models.{model_id}", message))
        if issues:
            raise ConfigError(issues)

    def _follow(self, diff: ConfigDiff) -> None:
        """What follows the pool's models, as soon as they changed: the config the next
        reload is compared with, versions and routes of the models added and removed,
        health thresholds."""
        self.config = diff.running
        if self._rollouts is None:
            return
        self._rollouts.models_changed(diff.added, diff.removed)
        health = self._rollouts.health
        defaults = diff.running.health.thresholds
        changed = [*diff.added, *(c.spec for c in (*diff.updated, *diff.reloaded))]
        for spec in changed:
            own = spec.thresholds
            merged = None if own is None else Thresholds(**merged_thresholds(defaults, own))
            health.set_thresholds(spec.id, merged)
        for model_id in diff.removed:
            health.set_thresholds(model_id, None)

    # --- serve --watch ------------------------------------------------------------------

    async def _watch_file(self) -> None:
        """Reload when the file's content changes and then stays the same for one look
        (``WATCH_SECONDS``): a file caught half-written (truncated, then written) is
        never applied. A moment without the file (an editor's rename) is no change."""
        seen, pending = self._digest(), None
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = self._digest()
            if now is None or now == seen:
                pending = None
                continue
            if now != pending:
                pending = now  # changed: apply it once the next look finds it settled
                continue
            seen, pending = now, None
            await self._reload_quietly("watch")

    def _digest(self) -> str | None:
        with contextlib.suppress(OSError):
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        return None


def no_reload_on_sighup(loop: asyncio.AbstractEventLoop) -> None:
    """SIGHUP to a server with no config file to read again: say so in the log, rather
    than let the signal's default end the process."""

    def explain() -> None:
        log.warning("SIGHUP: this server runs without a config file; nothing to reload")

    loop.add_signal_handler(signal.SIGHUP, explain)


def _load(path: Path) -> Config:
    """The file's config, as ``serve`` read it at start; an empty file is refused: read
    at start it is the default config, but here it would remove every model (and an
    editor saving in place empties the file for a moment)."""
    try:
        empty = not path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        empty = False  # Config.load says what is wrong with it
    if empty:
        message = "the file is empty: a reload would remove every model; nothing changed"
        raise ConfigError([ConfigIssue(str(path), "", message)])
    return Config.load(path, plugins=PLUGINS)
