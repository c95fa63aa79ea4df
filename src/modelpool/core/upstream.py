"""UpstreamAccess: what a request to a model's endpoint needs besides its URL.

A server modelpool starts on loopback needs nothing more. A server it does not start
(``backend: remote``) may want a key, know the model by another name, and deserve
timeouts of its own; its backend says so in ``Handle.upstream``, and the proxy obeys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class UpstreamAccess:
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Sent with every request (``Authorization: Bearer ...``). Secret: left out of the
    repr, and the proxy scrubs their values from what it records of error answers."""
    model: str | None = None
    """The name the server knows the model by, when it is not the pool's id."""
    connect_timeout: float | None = None
    """Seconds to connect (None: the proxy's default)."""
    read_timeout: float | None = None
    """Seconds the answer may go without a byte before it is given up (None: no limit)."""

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.headers)) or "none"
        return (
            f"UpstreamAccess(headers=<{names}>, model={self.model!r}, "
            f"connect_timeout={self.connect_timeout!r}, read_timeout={self.read_timeout!r})"
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """The header values, and each one's last word (a Bearer token alone)."""
        found = {value for value in self.headers.values() if value}
        found |= {value.split()[-1] for value in found if value.split()}
        return tuple(sorted(found, key=len, reverse=True))
