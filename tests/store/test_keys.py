from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgebox.store.errors import KeyFileExistsError, KeyFileInsecureError, KeyInvalidError, KeyMissingError
from edgebox.store.keys import (
    CREDENTIAL_NAME,
    DatabaseKey,
    create_key_file,
    load_database_key,
    load_key_file,
)


def test_create_key_file_is_0600_random_and_never_overwritten(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        a = create_key_file(tmp_path / "a.key")
    finally:
        os.umask(old)
    st = (tmp_path / "a.key").stat()
    assert st.st_mode & 0o777 == 0o600
    assert st.st_size == 32
    b = create_key_file(tmp_path / "b.key")
    assert a != b
    assert load_key_file(tmp_path / "a.key") == a
    before = (tmp_path / "a.key").read_bytes()
    with pytest.raises(KeyFileExistsError):
        create_key_file(tmp_path / "a.key")
    assert (tmp_path / "a.key").read_bytes() == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602, 0o620])
def test_group_or_world_accessible_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k"
    create_key_file(path)
    path.chmod(mode)
    with pytest.raises(KeyFileInsecureError) as err:
        load_key_file(path)
    assert err.value.code == "store_key_file_insecure"
    assert (path.read_bytes().hex()) not in str(err.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_key_file_is_accepted(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k"
    key = create_key_file(path)
    path.chmod(mode)
    assert load_key_file(path) == key


def test_hex_key_file_is_accepted(tmp_path: Path) -> None:
    raw = os.urandom(32)
    path = tmp_path / "hex.key"
    path.write_text(raw.hex() + "\n")
    path.chmod(0o600)
    assert load_key_file(path) == DatabaseKey(raw, source="x")


@pytest.mark.parametrize("content", [b"", b"short", b"x" * 31, b"x" * 33, b"zz" * 32, b"a" * 5000])
def test_malformed_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyInvalidError):
        load_key_file(path)


def test_symlinked_or_missing_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    create_key_file(real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(KeyMissingError):
        load_key_file(link)
    with pytest.raises(KeyMissingError):
        load_key_file(tmp_path / "nope.key")
    with pytest.raises(KeyInvalidError):
        load_key_file(tmp_path)  # a directory


def test_credential_takes_precedence_over_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    raw = os.urandom(32)
    (creds / CREDENTIAL_NAME).write_bytes(raw)
    (creds / CREDENTIAL_NAME).chmod(0o440)  # systemd's own mode; not our check
    dev = create_key_file(tmp_path / "dev.key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    key = load_database_key(key_file=tmp_path / "dev.key")
    assert key == DatabaseKey(raw, source="credential")
    assert key.source == "credential"
    assert key != dev
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert load_database_key(key_file=tmp_path / "dev.key") == dev


def test_credentials_directory_without_our_credential_falls_back(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    dev = create_key_file(tmp_path / "dev.key")
    assert load_database_key(key_file=tmp_path / "dev.key", credentials_directory=tmp_path / "creds") == dev


def test_key_value_in_environment_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32).hex()
    for name in ("EDGEBOX_DB_KEY", "EDGEBOX_STORE_KEY", "DB_KEY", "SQLCIPHER_KEY"):
        monkeypatch.setenv(name, raw)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(KeyMissingError) as err:
        load_database_key()
    assert err.value.code == "store_key_missing"


def test_key_is_never_printed() -> None:
    key = DatabaseKey.generate()
    raw_hex = key.pragma_literal()[3:-2]
    assert len(raw_hex) == 64
    for text in (repr(key), str(key), f"{key}"):
        assert raw_hex not in text
        assert "redacted" in text
