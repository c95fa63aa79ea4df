"""``POST /admin/reload``: read the config file again and apply what changed.

200 with the diff when applied (``changed: false`` when the file says what runs);
422 ``invalid_config`` with every problem (``issues``: file, line, key, message) when
the file is refused, the running config untouched; 409 ``no_config_file`` when the
server runs without a file (the embedded default). The reload writes its own audit
line, with the diff, as SIGHUP and ``serve --watch`` do.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from modelpool.http.audit_routes import caller
from modelpool.http.errors import ApiError
from modelpool.http.reloader import OPERATION
from modelpool.http.state import ServerState


def router(state: ServerState) -> APIRouter:
    api = APIRouter(prefix="/admin", tags=["admin"])

    @api.post("/reload")
    async def reload(request: Request) -> dict[str, Any]:
        """Read the config file again: apply the difference, or refuse a file with
        problems (each with its file, line and key) and keep the running config."""
        reloader = state.reloader
        if reloader is None:
            message = (
                "this server runs without a config file (the embedded default, or a config "
                "given in code): there is nothing to read again; start it with "
                "'modelpool serve --config FILE'"
            )
            if state.audit is not None:
                state.audit.record(OPERATION, caller(request), {}, 409, message)
            raise ApiError(409, message, code="no_config_file")
        outcome = await reloader.reload("http", caller(request))
        summary = outcome.summary()
        if not outcome.ok:
            count = len(outcome.issues)
            message = (
                f"{outcome.source}: invalid configuration ({count} problem"
                f"{'s' * (count != 1)}); nothing changed:\n"
                + "\n".join(f"  {issue}" for issue in outcome.issues)
            )
            raise ApiError(422, message, code="invalid_config", extra={"issues": summary["issues"]})
        return summary

    return api
