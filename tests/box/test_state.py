"""First start and key sources: credentials win, a malformed credential never falls back to a key
file, only development mode with a truly absent credential may create key files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgebox.box.identity import BoxIdentity
from edgebox.box.state import (
    IDENTITY_CREDENTIAL,
    IdentityCredentialError,
    identity_credential_bytes,
    init_state,
    open_state,
)
from edgebox.session import crypto
from edgebox.store.errors import KeyInvalidError, KeyMissingError


def _creds(tmp: Path, *, db_key: bytes | None, identity: bytes | None) -> Path:
    d = tmp / "creds"
    d.mkdir()
    if db_key is not None:
        (d / "edgebox-db-key").write_bytes(db_key)
    if identity is not None:
        (d / IDENTITY_CREDENTIAL).write_bytes(identity)
    return d


def test_the_unit_path_uses_credentials_and_writes_no_key_file(tmp_path: Path) -> None:
    ident = BoxIdentity.generate()
    creds = _creds(tmp_path, db_key=os.urandom(32), identity=identity_credential_bytes(ident))
    root = tmp_path / "state"
    state = open_state(root, dev=False, create=True, credentials=creds)
    try:
        assert state.identity_source == "credential"
        assert state.identity.public_point == ident.public_point
        # The box id is derived from the public key (contract 5): stable across starts.
        assert state.identity.box_id == crypto.key_hash(ident.public_point)[:8]
    finally:
        state.close()
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith("box.db")) == []
    again = open_state(root, dev=False, credentials=creds)
    assert again.identity.box_id == state.identity.box_id
    again.close()


@pytest.mark.parametrize("dev", [False, True])
def test_malformed_db_key_credential_never_falls_back(tmp_path: Path, dev: bool) -> None:
    creds = _creds(tmp_path, db_key=b"short", identity=identity_credential_bytes(BoxIdentity.generate()))
    root = tmp_path / "state"
    with pytest.raises(KeyInvalidError):
        open_state(root, dev=dev, create=True, credentials=creds)
    assert not (root / "db.key").exists() and not (root / "box.db").exists()


@pytest.mark.parametrize("dev", [False, True])
def test_malformed_identity_credential_never_falls_back(tmp_path: Path, dev: bool) -> None:
    creds = _creds(tmp_path, db_key=os.urandom(32), identity=b"\x30\x03garbage")
    root = tmp_path / "state"
    with pytest.raises(IdentityCredentialError) as err:
        open_state(root, dev=dev, create=True, credentials=creds)
    assert err.value.code == "identity_credential_invalid"
    assert not (root / "identity.json").exists() and not (root / "db.key").exists()


def test_without_credentials_the_unit_cannot_create_key_files(tmp_path: Path) -> None:
    root = tmp_path / "state"
    empty = _creds(tmp_path, db_key=None, identity=None)
    with pytest.raises(KeyMissingError, match="development only"):
        open_state(root, dev=False, create=True, credentials=empty)
    assert not (root / "identity.json").exists() and not (root / "db.key").exists()


def test_development_creates_key_files_once(tmp_path: Path) -> None:
    root = tmp_path / "state"
    state = init_state(root, dev=True, credentials=tmp_path / "no-such-dir")
    box_id = state.identity.box_id
    state.close()
    assert (root / "identity.json").stat().st_mode & 0o777 == 0o600
    assert (root / "db.key").stat().st_mode & 0o777 == 0o600
    reopened = open_state(root, dev=True, credentials=tmp_path / "no-such-dir")
    assert reopened.identity.box_id == box_id
    reopened.close()
    # Opening without create never makes a new, empty state.
    with pytest.raises(KeyMissingError):
        open_state(tmp_path / "other", dev=True, credentials=tmp_path / "no-such-dir")


def test_a_credentials_directory_turns_development_mode_off(tmp_path: Path) -> None:
    # The unit has a credentials directory; even with development flags it never makes key files.
    creds = _creds(tmp_path, db_key=os.urandom(32), identity=None)
    with pytest.raises(KeyMissingError):
        open_state(tmp_path / "state", dev=True, create=True, credentials=creds)
    assert not (tmp_path / "state" / "identity.json").exists()
