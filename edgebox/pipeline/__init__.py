"""Request pipeline pieces shared by the box and the gateway (schema, limits, classifier, quotas, tracing)."""
