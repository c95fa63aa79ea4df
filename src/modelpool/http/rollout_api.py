"""``/admin`` routes for versions and rollouts, health and alerts.

Refusals carry every reason: a rollout that cannot start answers 409 with
``problems``, a version whose settings are wrong answers 422 with ``issues`` (each
with its path), so an operator fixes everything in one go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from modelpool.errors import (
    ConfigError,
    ModelBusy,
    ModelPoolError,
    SwitchRefused,
    UnknownModel,
    UnknownOperation,
    UnknownVersion,
)
from modelpool.http.audit import AuditLog
from modelpool.http.audit_routes import audited, audited_routes
from modelpool.http.errors import ApiError
from modelpool.rollout import RolloutManager

Settings = Annotated[dict[str, Any] | None, Body()]


class SwitchRequest(BaseModel):
    """The body of ``POST /admin/rollouts`` and ``/admin/rollouts/validate``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    target_version: str = Field(min_length=1)
    strategy: str = "immediate"
    config: dict[str, Any] | None = None

    def arguments(self) -> tuple[str, str, str, dict[str, Any] | None]:
        return self.model, self.target_version, self.strategy, self.config


T = TypeVar("T")


def router(rollouts: RolloutManager, audit: AuditLog | None = None) -> APIRouter:
    """The routes; those that change something are written to ``audit``."""
    api = APIRouter(prefix="/admin", tags=["rollouts"], route_class=audited_routes(audit))

    @api.get("/versions")
    async def every_model_versions() -> dict[str, Any]:
        """Every model with more than one version, as the dashboard's versions panel
        shows it: ``/admin/models/{model}/versions`` with each version's health over the
        health window and the running rollout in full (its steps). Reads only."""
        return {
            "window": rollouts.health.window,
            "models": [_overview(rollouts, model) for model in rollouts.models_with_versions()],
        }

    @api.get("/models/{model}/versions")
    async def versions(model: str) -> dict[str, Any]:
        return _guarded(lambda: rollouts.describe(model))

    @api.post("/models/{model}/versions", status_code=201)
    @audited("register")
    async def register(
        model: str,
        version: Annotated[str, Body(min_length=1, max_length=64)],
        settings: Settings = None,
        author: Annotated[str | None, Body(max_length=200)] = None,
        notes: Annotated[str | None, Body(max_length=2000)] = None,
    ) -> dict[str, Any]:
        return _guarded(
            lambda: rollouts.register_version(
                model, version, settings or {}, author=author, notes=notes
            )
        )

    @api.delete("/models/{model}/versions/{version}")
    @audited("unregister")
    async def unregister(model: str, version: str) -> dict[str, Any]:
        try:
            await rollouts.unregister_version(model, version)
        except ModelPoolError as error:
            raise _answer(error) from None
        return {"model": model, "version": version, "removed": True}

    @api.post("/rollouts", status_code=202)
    @audited("rollout")
    async def start(switch: SwitchRequest) -> dict[str, Any]:
        try:
            result = await rollouts.switch_model(*switch.arguments())
        except ModelPoolError as error:
            raise _answer(error) from None
        if not result.success:
            raise _answer(SwitchRefused(switch.model, result.errors))
        assert result.operation_id is not None
        return rollouts.get_switch_status(result.operation_id)

    @api.post("/rollouts/validate")
    async def validate(switch: SwitchRequest) -> dict[str, Any]:
        return rollouts.validate_switch_request(*switch.arguments())

    @api.get("/rollouts")
    async def operations(model: Annotated[str | None, Query()] = None) -> dict[str, Any]:
        return {"operations": _guarded(lambda: rollouts.operations(model))}

    @api.get("/rollouts/{operation_id}")
    async def operation(operation_id: str) -> dict[str, Any]:
        return _guarded(lambda: rollouts.get_switch_status(operation_id))

    @api.post("/rollouts/{operation_id}/abort")
    @audited("abort")
    async def abort(operation_id: str) -> dict[str, Any]:
        return _guarded(lambda: rollouts.abort(operation_id))

    @api.post("/models/{model}/rollback")
    @audited("rollback")
    async def rollback(model: str) -> dict[str, Any]:
        try:
            return await rollouts.rollback(model)
        except ModelPoolError as error:
            raise _answer(error) from None

    @api.get("/health")
    async def health() -> dict[str, Any]:
        return rollouts.health.snapshot()

    @api.get("/alerts")
    async def alerts() -> dict[str, Any]:
        return {"alerts": rollouts.health.snapshot()["alerts"]}

    return api


def _overview(rollouts: RolloutManager, model: str) -> dict[str, Any]:
    """``model``'s versions, each with its health, and its running rollout with steps."""
    described = rollouts.describe(model)
    for version in described["versions"]:
        name = version["version"]
        stats = asdict(rollouts.health.stats(model, name))
        version["health"] = {**stats, "level": str(rollouts.health.level(model, name))}
    live = described["rollout"]
    if live is not None:
        described["rollout"] = rollouts.get_switch_status(live["operation_id"])
    return described


def _guarded(work: Callable[[], T]) -> T:
    try:
        return work()
    except ModelPoolError as error:
        raise _answer(error) from None


def _answer(error: ModelPoolError) -> ApiError:
    """An operator's answer: the whole message, and every problem when there are several."""
    if isinstance(error, UnknownModel):
        return ApiError(404, str(error), code="model_not_found", param="model")
    if isinstance(error, UnknownVersion):
        return ApiError(404, str(error), code="version_not_found", param="version")
    if isinstance(error, UnknownOperation):
        return ApiError(404, str(error), code="operation_not_found")
    if isinstance(error, SwitchRefused):
        return ApiError(409, str(error), code="refused", extra={"problems": error.problems})
    if isinstance(error, ModelBusy):
        return ApiError(409, str(error), code="busy")
    if isinstance(error, ConfigError):
        issues = [{"path": issue.path, "message": issue.message} for issue in error.issues]
        return ApiError(422, str(error), code="invalid_settings", extra={"issues": issues})
    return ApiError(500, str(error), code="internal")
