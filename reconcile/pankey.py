"""The key of card fingerprints when `RECON_PAN_KEY` is not set: a file beside the database.

Masked ids keep a short fingerprint of the card number so that ids stay distinct, and
`transactions.card_hmac` correlates one card across runs. Unkeyed, such a fingerprint gives the
card away: with the BIN known, 10^5 Luhn-valid candidates remain and the fingerprint picks the
right one in seconds. So fingerprints are always keyed: by `RECON_PAN_KEY` when configured, else
by a random key generated once per store and kept in `<db>.pankey`, outside the database (a copy
of the database alone does not carry it), mode 0600, beside the audit anchor `<db>.anchor`.

The file is written whole under a temporary name and published with a hard link, which fails if
the name exists: two processes creating it at once both end up with the first one's key, and
nobody ever reads a half-written key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from pathlib import Path

from reconcile import redact
from reconcile.errors import ConfigError

KEY_BYTES = 32
_CACHE: dict[Path, bytes] = {}


def key_path(db: Path) -> Path:
    """`<db>.pankey`, beside the database."""
    return db.with_name(db.name + ".pankey")


def _problem(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"card fingerprint key file {path}: {what}; fix it, or set RECON_PAN_KEY to a long random "
        "secret kept outside the database (the key file is only used when RECON_PAN_KEY is unset)"
    )


def _read(path: Path) -> bytes | None:
    """The key in `path`, None if there is no file."""
    for _ in range(50):  # a file being written by the fallback below is empty for a moment
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _problem(path, exc.strerror or "cannot be read") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _problem(path, "is not a regular file")
            if info.st_mode & 0o077:
                raise _problem(
                    path, f"is readable by others (mode {info.st_mode & 0o777:o}): chmod 600"
                )
            key = os.read(fd, 4096).strip()
        finally:
            os.close(fd)
        if key:
            return key
        time.sleep(0.01)
    raise _problem(path, "is empty")


def _create(path: Path) -> None:
    """Write a fresh key to `path` unless a file is already there (then keep that one)."""
    key = secrets.token_hex(KEY_BYTES).encode() + b"\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(temporary, flags, 0o600)
    except OSError as exc:
        raise _problem(path, f"cannot be created ({exc.strerror})") from None
    try:
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)  # fails if another process published its key first
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system: create the name itself, exclusively
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, flags, 0o600)
                try:
                    os.write(fd, key)
                    os.fsync(fd)
                finally:
                    os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    with contextlib.suppress(OSError):  # make the new name durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def load_or_create(db: Path) -> bytes:
    """The store's fingerprint key from `<db>.pankey`, generated there on first use."""
    path = key_path(db)
    cached = _CACHE.get(path)
    if cached is not None and path.exists():
        return cached
    key = _read(path)
    if key is None:
        _create(path)
        key = _read(path)
        if key is None:
            raise _problem(path, "vanished while it was being created")
    _CACHE[path] = key
    redact.remember_secrets([key.decode(errors="replace")])  # masked wherever it shows up
    return key
