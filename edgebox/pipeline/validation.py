"""Strict decoding with safe errors, re-exported for the pipeline; it lives in
`edgebox.schema.validation` (below the session layer, which uses it too)."""

from edgebox.schema.validation import Invalid, decode, explain

__all__ = ["Invalid", "decode", "explain"]
