"""The box's state directory and its two secrets: the identity key and the database key.

<state>/box.db          the SQLCipher store (phones, pairing secrets, prompt log, cache, outbox, documents)
<state>/box.crt         the gateway client certificate (written by `box enroll`, renewed in place)
<state>/identity.json   development only: box id + long-term P-256 key (0600)
<state>/db.key          development only: the 256-bit SQLCipher key (0600)

Theory of operation: on a real box both secrets are systemd credentials, sealed at first boot and
handed to the unit in `$CREDENTIALS_DIRECTORY` (contract 5): `edgebox-db-key` (32 raw bytes) and
`edgebox-identity` (the P-256 private key, PKCS#8 DER). The box id is then derived from the public
key (first 8 bytes of its SHA-256, the same hash phones pin). The identity key also signs the box's
certificate requests: one key, never written anywhere by the box.

The rules, in order, for each secret:
1. the credential exists -> it is used; a malformed credential is a typed error, **never** a reason to
   fall back to a key file (that was the old `except Exception` path, which silently created a
   plaintext key next to the store);
2. otherwise, only in development mode (`dev=True`: `box init`, the development flags of `box run`,
   or `[box] dev_key_files = true`) a key file in the state dir is read, or created when `create=True`;
3. otherwise `KeyMissingError`: the unit (no dev mode) can never create a key file. A process that
   has a credentials directory (any systemd unit with `LoadCredential*=`) is never in development
   mode, whatever its flags say.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgebox.box.identity import BoxIdentity
from edgebox.box.store_registry import StoreRegistry
from edgebox.keyfile import KeyFileError
from edgebox.log import get_logger
from edgebox.session import crypto
from edgebox.session.invite import BOX_ID_LEN
from edgebox.store.errors import KeyMissingError
from edgebox.store.keys import (
    CREDENTIAL_NAME,
    DatabaseKey,
    create_key_file,
    load_credential,
    load_key_file,
)
from edgebox.store.store import Store

IDENTITY_CREDENTIAL = "edgebox-identity"
_MAX_CREDENTIAL_BYTES = 4096
log = get_logger("edgebox.box.state")


class IdentityCredentialError(KeyFileError):
    code = "identity_credential_invalid"


@dataclass
class BoxState:
    root: Path
    identity: BoxIdentity
    store: Store
    identity_source: str = "key-file"  # or "credential"

    @property
    def registry(self) -> StoreRegistry:
        return StoreRegistry(self.store)

    def close(self) -> None:
        self.store.close()


def credentials_directory(explicit: Path | str | None = None) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    value = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(value) if value else None


def identity_from_credential(data: bytes) -> BoxIdentity:
    """Parse `edgebox-identity` (PKCS#8 DER; PEM accepted) into the box identity."""
    if not data or len(data) > _MAX_CREDENTIAL_BYTES:
        raise IdentityCredentialError(f"credential {IDENTITY_CREDENTIAL} is empty or too large")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityCredentialError(
            f"credential {IDENTITY_CREDENTIAL} is not a PKCS#8 private key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise IdentityCredentialError(f"credential {IDENTITY_CREDENTIAL} is not a P-256 key")
    box_id = crypto.key_hash(crypto.encode_public(key))[:BOX_ID_LEN]
    return BoxIdentity(box_id, key)


def identity_credential_bytes(identity: BoxIdentity) -> bytes:
    """The PKCS#8 DER form of a key (what the first-boot unit seals; tests use it too)."""
    return identity.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _read_credential(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise IdentityCredentialError(f"cannot open credential {path.name}: {exc.strerror}") from None
    try:
        return os.read(fd, _MAX_CREDENTIAL_BYTES + 1)
    finally:
        os.close(fd)


def load_identity(root: Path, *, dev: bool, create: bool, creds: Path | None) -> tuple[BoxIdentity, str]:
    if creds is not None and (creds / IDENTITY_CREDENTIAL).exists():
        return identity_from_credential(_read_credential(creds / IDENTITY_CREDENTIAL)), "credential"
    path = root / "identity.json"
    if not dev:
        raise KeyMissingError(
            f"no box identity: the systemd credential {IDENTITY_CREDENTIAL!r} is not in "
            "$CREDENTIALS_DIRECTORY (key files are for development only)"
        )
    if path.exists():
        return BoxIdentity.load(path), "key-file"
    if not create:
        raise KeyMissingError(f"no box identity at {path}: run `edgebox box init` first")
    identity = BoxIdentity.generate()
    identity.save(path)
    return identity, "key-file"


def load_db_key(root: Path, *, dev: bool, create: bool, creds: Path | None) -> DatabaseKey:
    if creds is not None and (creds / CREDENTIAL_NAME).exists():
        return load_credential(creds)  # malformed: KeyInvalidError, no fallback
    if not dev:
        raise KeyMissingError(
            f"no database key: the systemd credential {CREDENTIAL_NAME!r} is not in "
            "$CREDENTIALS_DIRECTORY (key files are for development only)"
        )
    key_file = root / "db.key"
    if key_file.exists():
        return load_key_file(key_file)
    if not create:
        raise KeyMissingError(f"no database key at {key_file}: run `edgebox box init` first")
    return create_key_file(key_file)


def open_state(
    root: Path,
    *,
    dev: bool = True,
    create: bool = False,
    credentials: Path | str | None = None,
    clock: Callable[[], float] = time.time,
) -> BoxState:
    """Open the state directory (creating what is missing only with `create=True`, see the rules);
    `clock` is the store's wall clock (expiries and TTLs)."""
    creds = credentials_directory(credentials)
    if creds is not None and creds.is_dir():
        # Running with a credentials directory (a systemd unit): key files are never read or made,
        # whatever the flags say; a missing credential is an error.
        dev = False
    if create:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity, source = load_identity(root, dev=dev, create=create, creds=creds)
    key = load_db_key(root, dev=dev, create=create, creds=creds)
    db = root / "box.db"
    store = Store.open(db, key, create=create and not db.exists(), clock=clock)
    return BoxState(root, identity, store, identity_source=source)


def init_state(root: Path, *, dev: bool = True, credentials: Path | str | None = None) -> BoxState:
    """Create whatever is missing (development key files only where the rules allow)."""
    return open_state(root, dev=dev, create=True, credentials=credentials)
