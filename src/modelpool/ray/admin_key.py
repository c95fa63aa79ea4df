"""The admin key check of the ingress's own route (``/admin/status``).

``/v1`` requests go on to a pool replica with their headers, where the server's
``Guard`` checks them; ``/admin/status`` is answered by the ingress itself, so it checks
the key here, as ``Guard`` would: the admin keys, else the API keys, every key compared.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.responses import Response

from modelpool.http.errors import AUTHENTICATION, error_response
from modelpool.http.security import presented_key


def refusal(headers: Iterable[tuple[bytes, bytes]], keys: list[bytes]) -> Response | None:
    """The 401 for a request without one of ``keys`` (None: let it through; no keys
    set: everyone may)."""
    if not keys:
        return None
    given = presented_key(dict(headers))
    matched = False
    for key in keys:  # every key compared: no early exit to time
        matched |= given is not None and hmac.compare_digest(given, key)
    if matched:
        return None
    message = (
        "Incorrect API key" if given is not None
        else "No API key given: send 'Authorization: Bearer <key>'"
    )  # fmt: skip
    return error_response(401, message, kind=AUTHENTICATION, code="invalid_api_key")
