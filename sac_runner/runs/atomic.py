"""Atomic file writes: the content goes to a temporary name beside the target (fsynced), then is renamed over it,
so a reader never sees half a file and a failed write (a full disk, a kill) leaves the previous file as it was."""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable


def temporary_name(path: Path) -> Path:
    """`.<name>.tmp` beside `path` (hidden; report tools and run-dir listings skip it)."""
    return path.with_name(f".{path.name}.tmp")


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """write(f) into `path`, flushed and fsynced (not atomic by itself: see atomic_write)."""
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, write: Callable[[BinaryIO], object], tmp: Path | None = None) -> Path:
    """write(f) into a temporary file, then rename it to `path`. The temporary file never outlives a failure."""
    path = Path(path)
    tmp = tmp or temporary_name(path)
    try:
        write_synced(tmp, write)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
