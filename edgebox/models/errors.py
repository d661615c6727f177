"""Typed errors of the local-model layer (edgebox.models).

Every message is safe to print: it names files, codes and counts, never prompt text.
"""

from __future__ import annotations

from edgebox.errors import EdgeboxError


class ModelError(EdgeboxError):
    code = "model_error"


class ModelsMissingError(ModelError):
    """The models directory has no (readable) manifest: run `edgebox models build`."""

    code = "models_missing"


class ManifestInvalidError(ModelError):
    code = "models_manifest_invalid"


class ModelHashMismatchError(ModelError):
    """A model file's SHA-256 differs from the manifest: tampered or corrupted; refused."""

    code = "model_hash_mismatch"


class RuntimeUnavailableError(ModelError):
    code = "model_runtime_unavailable"


class ClassifyInputError(ModelError):
    """One JSON Lines input record is malformed (not JSON, not an object, no string "text")."""

    code = "classify_input_invalid"


class ModelBuildError(ModelError):
    code = "model_build_failed"
