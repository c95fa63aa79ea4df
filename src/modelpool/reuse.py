"""How likely a model is to be wanted again soon, from how long it has been idle.

The one guess at an eviction's price that the box's placement and the cluster's router
share: evicting a model costs its reload only if it is wanted again before the pool's
own policy would have let it go anyway.
"""

from __future__ import annotations

import math

REUSE_HORIZON = 60.0
"""Seconds ahead that an eviction is paid for: a model wanted again later would have
been evicted by then anyway, by the pool's own policy, whatever placement chose.
Of 30, 60, 120 and 300 s, 60 s came closest to placement by cost never waiting more
than most room (``bench/placement_price.py``, seeds 0-19: bursty 0.992x, the other
workloads 1.01-1.48x)."""


def reuse_chance(idle_seconds: float) -> float:
    """The chance a model idle for ``idle_seconds`` is wanted within ``REUSE_HORIZON``,
    guessing its requests arrive at random at the rate its idle time suggests (one per
    ``idle_seconds``): 1 - exp(-horizon / idle). Just used: 1; idle ten minutes: 0.10.
    It agrees with the pool's policies, which all keep the recently used."""
    if idle_seconds <= 0:
        return 1.0
    return -math.expm1(-REUSE_HORIZON / idle_seconds)
