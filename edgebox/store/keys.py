"""Loading and creating the 256-bit database key.

Theory of operation: the store is opened in SQLCipher raw-key mode, so the key is 32 random bytes
(no passphrase, no KDF at open). It comes from exactly two places:

1. the systemd credential `edgebox-db-key` in `$CREDENTIALS_DIRECTORY` (the unit says
   `LoadCredentialEncrypted=edgebox-db-key:...`; systemd decrypts it into a private, non-swappable
   directory only the service can read) -- this is how the box runs;
2. a key file for development, which must be a regular file owned by the current user and not
   readable or writable by group or others (mode 0600 or stricter), else `KeyFileInsecureError`.

The key *value* is never taken from the config file or from an environment variable; only the
credentials directory's location comes from the environment, as systemd defines it. A key file holds
either the 32 raw bytes (what `edgebox store init-key` writes, and what `systemd-creds encrypt`
seals) or 64 hex digits with an optional trailing newline. Anything else is `KeyInvalidError`.

`DatabaseKey` keeps the bytes out of `repr()`/`str()` so a key cannot end up in a log line by
accident. (CPython cannot guarantee wiping memory; the process is the trust boundary.)
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from edgebox.store.errors import KeyFileExistsError, KeyFileInsecureError, KeyInvalidError, KeyMissingError

CREDENTIAL_NAME = "edgebox-db-key"
KEY_BYTES = 32
_MAX_KEY_FILE_BYTES = 4096


class DatabaseKey:
    """A 256-bit SQLCipher raw key. Never printed."""

    __slots__ = ("_raw", "source")

    def __init__(self, raw: bytes, *, source: str) -> None:
        if len(raw) != KEY_BYTES:
            raise KeyInvalidError(f"database key must be {KEY_BYTES} bytes")
        self._raw = bytes(raw)
        self.source = source  # "credential" or "key-file": safe to log

    def pragma_literal(self) -> str:
        """The value for `PRAGMA key = ...` in raw-key mode: "x'<64 hex>'" (no KDF)."""
        return "\"x'" + self._raw.hex() + "'\""

    def __repr__(self) -> str:
        return f"DatabaseKey(<redacted>, source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseKey) and secrets.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(self.source)

    @classmethod
    def generate(cls) -> DatabaseKey:
        return cls(secrets.token_bytes(KEY_BYTES), source="generated")


def _parse_key_bytes(data: bytes, what: str) -> bytes:
    if len(data) == KEY_BYTES:
        return data
    text = data.rstrip(b"\r\n")
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise KeyInvalidError(f"{what} must hold {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex digits")


def _read_small_file(path: Path, *, check_private: bool) -> bytes:
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyMissingError(f"key file not found: {path}") from None
    except OSError as exc:
        raise KeyMissingError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)  # check the file we actually opened (no stat/open race)
        if not stat.S_ISREG(st.st_mode):
            raise KeyInvalidError(f"key file is not a regular file: {path}")
        if check_private:
            if st.st_mode & 0o077:
                raise KeyFileInsecureError(
                    f"key file {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
                )
            if st.st_uid != os.geteuid():
                raise KeyFileInsecureError(f"key file {path} is not owned by the current user")
        data = os.read(fd, _MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyInvalidError(f"key file {path} is too large")
    return data


def load_key_file(path: Path | str) -> DatabaseKey:
    """Load a development key file (must be 0600 or stricter and owned by us)."""
    p = Path(path)
    return DatabaseKey(
        _parse_key_bytes(_read_small_file(p, check_private=True), "key file"), source="key-file"
    )


def load_credential(credentials_directory: Path | str) -> DatabaseKey:
    """Load the systemd credential `edgebox-db-key` from the given credentials directory."""
    p = Path(credentials_directory) / CREDENTIAL_NAME
    # systemd owns the directory's protection (private mount, 0400/0500); no mode check here.
    data = _read_small_file(p, check_private=False)
    return DatabaseKey(_parse_key_bytes(data, "credential " + CREDENTIAL_NAME), source="credential")


def load_database_key(
    *, key_file: Path | str | None = None, credentials_directory: Path | str | None = None
) -> DatabaseKey:
    """Find the database key: the systemd credential first, then the development key file.

    `credentials_directory` defaults to `$CREDENTIALS_DIRECTORY` (set by systemd for the unit).
    Raises `KeyMissingError` when neither source has a key.
    """
    creds = credentials_directory
    if creds is None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY") or None
    if creds is not None and (Path(creds) / CREDENTIAL_NAME).exists():
        return load_credential(creds)
    if key_file is not None:
        return load_key_file(key_file)
    raise KeyMissingError(
        f"no database key: neither the systemd credential {CREDENTIAL_NAME!r} in $CREDENTIALS_DIRECTORY "
        "nor a key file was given"
    )


def create_key_file(path: Path | str) -> DatabaseKey:
    """Write 32 fresh random bytes to a new file with mode 0600. Never overwrites."""
    p = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    key = DatabaseKey.generate()
    try:
        fd = os.open(p, flags, 0o600)
    except FileExistsError:
        raise KeyFileExistsError(f"refusing to overwrite existing key file {p}") from None
    except OSError as exc:
        raise KeyMissingError(f"cannot create key file {p}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # independent of umask
        os.write(fd, key._raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(p.parent if str(p.parent) else Path("."), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return DatabaseKey(key._raw, source="key-file")
