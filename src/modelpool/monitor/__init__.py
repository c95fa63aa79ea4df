"""Health of served models: request outcomes and latencies per model and version."""
