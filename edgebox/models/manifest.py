"""The models manifest: what was built, from what, and how good it measured.

Theory of operation: `edgebox models build` writes `manifest.json` last (atomically), after every
model file. It records, per file, the SHA-256, size and source package + version, plus the quality
figures measured at build time and the `input_hash` that decides whether a rebuild is needed. At run
time every model file is read into memory once, hashed, and compared with the manifest *before* it
is handed to a runtime (from those same bytes, so nothing can swap the file in between); a mismatch
raises `ModelHashMismatchError` and the file is never loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebox.models.errors import ManifestInvalidError, ModelHashMismatchError, ModelsMissingError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Manifest:
    directory: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelsMissingError(
                f"no {MANIFEST_NAME} in {directory}: run `edgebox models build` (or `make models`)"
            ) from exc
        except OSError as exc:
            raise ModelsMissingError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ManifestInvalidError(f"{path} is not valid JSON") from exc
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestInvalidError(f"{path} has an unknown format (want {MANIFEST_FORMAT})")
        if not isinstance(data.get("files"), dict):
            raise ManifestInvalidError(f"{path} has no files table")
        return cls(directory=directory, data=data)

    @property
    def input_hash(self) -> str:
        return str(self.data.get("input_hash", ""))

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if not isinstance(value, dict):
            raise ManifestInvalidError(f"manifest has no {name!r} section")
        return value

    def read_verified(self, name: str) -> bytes:
        """Return the bytes of model file `name` after checking them against the manifest."""
        entry = self.data["files"].get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise ManifestInvalidError(f"manifest does not list {name}")
        path = self.directory / name
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ModelsMissingError(f"model file {name} is missing or unreadable: {exc.strerror}") from exc
        actual = hashlib.sha256(content).hexdigest()
        if actual != entry["sha256"] or len(content) != entry.get("size", len(content)):
            raise ModelHashMismatchError(
                f"model file {name} does not match the manifest (sha256 {actual[:16]}..., expected "
                f"{entry['sha256'][:16]}...): refusing to load a tampered or corrupted model; rebuild with "
                "`edgebox models build --force`"
            )
        return content

    def verify_all(self) -> list[str]:
        """Check every listed file; return the names checked (raises on the first mismatch)."""
        names = sorted(self.data["files"])
        for name in names:
            self.read_verified(name)
        return names
