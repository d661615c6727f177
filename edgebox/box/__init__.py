"""The branch box: identity, phone registry, and the session server that phones talk to."""
