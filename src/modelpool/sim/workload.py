"""A workload: the requests a simulation replays, in order of arrival."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Request:
    """One request: when it arrives, which model it wants, and how much work it is.

    The work is either ``service`` seconds given outright (a trace that has them) or
    token counts that the model set turns into seconds (``SimModel.service_seconds``).
    """

    time: float
    """Seconds from the start of the workload."""
    model: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    service: float | None = None
    """Seconds the model is busy with this request; None: derived from the tokens."""


@dataclass(frozen=True, slots=True)
class Workload:
    """Requests sorted by time, with a name and a line saying where they came from."""

    name: str
    requests: tuple[Request, ...]
    description: str = ""
    params: dict[str, object] = field(default_factory=dict)
    """How it was made (generator settings, seed), for the result files."""

    def __post_init__(self) -> None:
        times = [r.time for r in self.requests]
        if any(b < a for a, b in itertools.pairwise(times)):
            raise ValueError(f"workload {self.name!r}: requests must be sorted by time")

    @property
    def duration(self) -> float:
        return self.requests[-1].time - self.requests[0].time if self.requests else 0.0

    def models(self) -> list[str]:
        """The model ids it asks for, most requested first."""
        counts: dict[str, int] = {}
        for request in self.requests:
            counts[request.model] = counts.get(request.model, 0) + 1
        return sorted(counts, key=lambda m: (-counts[m], m))
