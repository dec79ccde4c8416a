"""Atomic file writes: a crash or kill never leaves half a file under the real name.

Bytes go to a hidden temp file in the same folder (same filesystem, so the rename is atomic), are
flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from autosr.errors import AutosrError

TMP_SUFFIX = ".tmp"


def temp_name_for(path: Path) -> Path:
    """A hidden, unique sibling name: ``.<name>.<random>.tmp`` (never matches a final name)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS/filesystem, so best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write a file through ``write(f)`` so that ``path`` is either the old file or the whole new one.

    Whatever ``write`` returns (e.g. ``f.write``'s byte count) is ignored.

    The bytes go to a temp file in the same folder (same filesystem, so the rename is atomic), are
    flushed and fsynced, and only then replace ``path``. On an exception the temp file is removed;
    after a hard kill it stays behind under its hidden temp name, which readers ignore.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path



def write_text_atomic(path: Path, text: str) -> Path:
    """UTF-8 text with \n line ends (the same bytes on Windows), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def check_creatable(target: Path, flag: str) -> None:
    """`target` (a folder that may not exist yet) can be created and written by this user: its
    nearest existing ancestor is a writable folder. One clear error naming it, before any work."""
    existing = target.resolve()
    while not existing.exists():  # missing folders are created when writing
        existing = existing.parent
    if not existing.is_dir():
        raise AutosrError(f"{existing}: not a folder, so {target} cannot be written", f"pass {flag} a path inside a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AutosrError(f"{existing}: folder is not writable", f"pass {flag} a path in a folder you can write to")
