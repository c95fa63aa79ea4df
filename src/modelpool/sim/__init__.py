"""The simulator: replay a request trace against every strategy and the offline bound.

It runs the pool's own ``Scheduler`` and policies on a virtual clock (``engine.py``),
so what it measures is what the pool would do, not what a re-implementation would.
"""
