"""The cloud AI gateway: mTLS device identity, validation, injection check, quotas, key injection."""
