"""Many nodes: routing requests between replicas of the pool (no Ray needed here)."""
