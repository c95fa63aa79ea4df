"""The OpenAI-compatible HTTP server over one ModelPool (`modelpool serve`)."""
