"""Traffic split between a model's versions: weights, and a pick that can be sticky.

Weights are kept target first: a request key hashes to a fixed point in [0, 1), and
the target covers [0, share). As a canary's share grows, a user already on the target
stays on it; during an A/B test the split is fixed, so a user sees one version.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

Weights = tuple[tuple[str, float], ...]
"""(version, share) pairs, target first; the shares add up to 1."""


def split(target: str, source: str, share: float) -> Weights:
    """The weights with ``share`` of traffic on ``target`` and the rest on ``source``."""
    if share >= 1.0:
        return ((target, 1.0),)
    if share <= 0.0:
        return ((source, 1.0),)
    return ((target, share), (source, 1.0 - share))


def sticky_point(model: str, key: str) -> float:
    """Where ``key`` falls in [0, 1) for ``model``: the same on every call and restart."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def pick(weights: Sequence[tuple[str, float]], point: float) -> str:
    """The version whose slice of [0, 1) holds ``point``."""
    for version, share in weights:
        point -= share
        if point < 0.0:
            return version
    return weights[-1][0]  # rounding at the very end of the range


def choose(model: str, weights: Weights, key: str | None, rng: random.Random) -> str:
    """The version one request goes to: by ``key`` when given, else at random."""
    if len(weights) == 1:
        return weights[0][0]
    point = sticky_point(model, key) if key else rng.random()
    return pick(weights, point)
