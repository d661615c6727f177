"""The phone's key file: its long-term P-256 key and the boxes it has paired with (0600 JSON).

A paired box is remembered by box id with the pinned hash of its key; the session handshake refuses
any box whose key does not match (`box_key_mismatch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgebox.keyfile import KeyFileError, read_private_json, write_private_json
from edgebox.session import crypto


@dataclass(frozen=True)
class PairedBox:
    box_id: str
    key_hash: bytes
    paired_at: int


@dataclass
class PhoneKeystore:
    path: Path
    identity: crypto.PrivateKey
    boxes: dict[str, PairedBox] = field(default_factory=dict)

    @property
    def public_point(self) -> bytes:
        return crypto.encode_public(self.identity)

    @classmethod
    def load_or_create(cls, path: Path) -> PhoneKeystore:
        if path.exists():
            return cls.load(path)
        store = cls(path, crypto.generate_private_key())
        store.save()
        return store

    @classmethod
    def load(cls, path: Path) -> PhoneKeystore:
        doc = read_private_json(path)
        try:
            if doc.get("kind") != "edgebox-phone-keystore" or doc.get("version") != 1:
                raise ValueError
            key = crypto.private_key_from_scalar(bytes.fromhex(doc["private_scalar"]))
            boxes = {
                box_id: PairedBox(box_id, bytes.fromhex(b["key_hash"]), int(b["paired_at"]))
                for box_id, b in doc.get("boxes", {}).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError):
            raise KeyFileError(f"{path} is not a valid edgebox phone keystore") from None
        return cls(path, key, boxes)

    def save(self) -> None:
        write_private_json(
            self.path,
            {
                "kind": "edgebox-phone-keystore",
                "version": 1,
                "private_scalar": crypto.private_key_scalar(self.identity).hex(),
                "boxes": {
                    b.box_id: {"key_hash": b.key_hash.hex(), "paired_at": b.paired_at}
                    for b in self.boxes.values()
                },
            },
        )

    def remember(self, box: PairedBox) -> None:
        self.boxes[box.box_id] = box
        self.save()

    def box(self, box_id: str | None) -> PairedBox:
        if box_id is None:
            if len(self.boxes) != 1:
                raise KeyFileError(
                    f"name the box (--box): this phone is paired with {len(self.boxes)} boxes",
                    code="box_not_paired",
                )
            return next(iter(self.boxes.values()))
        try:
            return self.boxes[box_id]
        except KeyError:
            raise KeyFileError(f"this phone is not paired with box {box_id}", code="box_not_paired") from None
