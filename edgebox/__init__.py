"""edgebox: a BLE branch box and an mTLS cloud gateway for AI requests."""

__version__ = "0.1.0"
