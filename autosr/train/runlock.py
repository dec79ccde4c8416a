"""One `autosr train` per run folder: `<run>/.lock` (JSON: pid, host, started), created atomically.

A lock whose process is gone (same host, pid not alive, or the pid now belongs to a process started
after the lock) is taken over, and the caller journals `takeover`. A lock from another host cannot be
checked, so it is respected. `release` removes the lock and any folders `acquire` created that are
still empty (a run that fails at start-up leaves nothing behind).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autosr.errors import AutosrError

LOCK_NAME = ".lock"
UNREADABLE_GRACE_S = 60.0  # an unreadable lock younger than this may be one being written right now


@dataclass
class RunLock:
    """A held lock; `takeover` says whose stale lock was replaced (None: there was none)."""

    path: Path
    created_dirs: list[Path] = field(default_factory=list)
    takeover: str | None = None

    def release(self) -> None:
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
            if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
                self.path.unlink()
        except (OSError, ValueError, AttributeError):
            pass
        self.remove_created_dirs()

    def remove_created_dirs(self) -> None:
        for folder in reversed(self.created_dirs):  # innermost first; a folder with anything in it stays
            try:
                folder.rmdir()
            except OSError:
                break


def acquire(run_dir: Path) -> RunLock:
    """Create `run_dir` (and its parents) if needed and take its lock, or raise AutosrError naming the holder."""
    missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir / LOCK_NAME, created_dirs=list(reversed(missing)))
    try:
        for _ in range(3):  # a lost race with another takeover: look again
            if _create(lock.path):
                return lock
            owner, raw = _read(lock.path)
            if raw is None:  # gone between the two calls
                continue
            why = _stale(owner, lock.path)
            if why is None:
                raise _held(owner, run_dir)
            if _read(lock.path)[1] == raw:  # still the stale one: remove it, then race for a new one
                lock.path.unlink(missing_ok=True)
            lock.takeover = why
        raise AutosrError(f"{lock.path}: could not take the run folder's lock", "try again")
    except BaseException:
        lock.remove_created_dirs()
        raise


def holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds `run_dir`'s lock, for readers such as `autosr report`: None when nobody does; else the
    owner record (pid, host, started; empty when unreadable) plus `alive`: True (running), False (its
    process is gone: killed or crashed) or None (another host or an unreadable lock: cannot be checked)."""
    path = run_dir / LOCK_NAME
    owner, raw = _read(path)
    if raw is None:
        return None
    if owner is None:
        return {"alive": None}
    if owner["host"] != socket.gethostname():
        return {**owner, "alive": None}
    return {**owner, "alive": _stale(owner, path) is None}


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the owner record, or None when unreadable; the raw text, or None when the file is gone)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError:
        return None, ""
    try:
        owner = json.loads(raw)
    except ValueError:
        return None, raw
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int) or not isinstance(owner.get("host"), str):
        return None, raw
    return owner, raw


def _stale(owner: dict[str, Any] | None, path: Path) -> str | None:
    """Why the lock can be taken over, or None when its owner may be running."""
    if owner is None:
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return "the lock file vanished"
        return f"an unreadable lock file, {age:.0f} s old" if age > UNREADABLE_GRACE_S else None
    pid, host = owner["pid"], owner["host"]
    if host != socket.gethostname():
        return None  # another machine: it cannot be checked from here
    if pid == os.getpid():
        return f"pid {pid} on host {host} is this process (a restarted container): the lock was left by a killed run"
    if not _alive(pid):
        return f"pid {pid} on host {host} is no longer running"
    started = owner.get("started")
    if isinstance(started, (int, float)) and _create_time(pid) > started + 1.0:
        return f"pid {pid} on host {host} is now another process, started after the lock"
    return None


def _alive(pid: int) -> bool:
    import psutil

    return bool(psutil.pid_exists(pid))


def _create_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return 0.0


def _held(owner: dict[str, Any] | None, run_dir: Path) -> AutosrError:
    lock = run_dir / LOCK_NAME
    if owner is None:
        return AutosrError(f"another autosr train is starting in {run_dir} ({lock} is being written)",
                           "wait for it, or train under another name: --set name=<new name>")
    who = f"another autosr train (pid {owner['pid']} on host {owner['host']}) is using {run_dir}"
    if owner["host"] != socket.gethostname():
        return AutosrError(f"{who}; it runs on another machine, so autosr cannot check whether it is still alive",
                           f"if that run is dead, delete {lock} and start again; or train under another name: --set name=<new name>")
    return AutosrError(who, "wait for it to end or stop it (Ctrl-C), or train under another name: --set name=<new name>")
