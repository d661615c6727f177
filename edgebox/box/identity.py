"""The box's long-term identity: an 8-byte box id and a P-256 key (pinned by phones via the QR code)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgebox.keyfile import KeyFileError, read_private_json, write_private_json
from edgebox.session import crypto
from edgebox.session.invite import BOX_ID_LEN


@dataclass(frozen=True)
class BoxIdentity:
    box_id: bytes
    private_key: crypto.PrivateKey

    @property
    def public_point(self) -> bytes:
        return crypto.encode_public(self.private_key)

    @property
    def key_hash(self) -> bytes:
        return crypto.key_hash(self.public_point)

    @property
    def box_id_hex(self) -> str:
        return self.box_id.hex()

    @classmethod
    def generate(cls) -> BoxIdentity:
        return cls(os.urandom(BOX_ID_LEN), crypto.generate_private_key())

    def save(self, path: Path) -> None:
        write_private_json(
            path,
            {
                "kind": "edgebox-box-identity",
                "version": 1,
                "box_id": self.box_id.hex(),
                "private_scalar": crypto.private_key_scalar(self.private_key).hex(),
            },
        )

    @classmethod
    def load(cls, path: Path) -> BoxIdentity:
        doc = read_private_json(path)
        try:
            if doc.get("kind") != "edgebox-box-identity" or doc.get("version") != 1:
                raise ValueError
            box_id = bytes.fromhex(doc["box_id"])
            key = crypto.private_key_from_scalar(bytes.fromhex(doc["private_scalar"]))
            if len(box_id) != BOX_ID_LEN:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise KeyFileError(f"{path} is not a valid edgebox box identity") from None
        return cls(box_id, key)

    @classmethod
    def load_or_create(cls, path: Path) -> BoxIdentity:
        if path.exists():
            return cls.load(path)
        identity = cls.generate()
        identity.save(path)
        return identity
