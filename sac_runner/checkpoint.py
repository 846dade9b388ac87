"""Checkpoints: atomic writes, verified loads, the last K kept.

Each checkpoint is `step_<N>.pt` (state dicts, tensors and plain containers, readable with
`torch.load(weights_only=True)`, so loading never runs code from the file) beside `step_<N>.json`
(its size and SHA-256). The manifest is written last: a checkpoint without one is incomplete.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or no valid one could be read."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint files in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save(directory: Path, step: int, state: dict, keep: int) -> Path:
    """Write `state` atomically as the checkpoint for `step`; keep the newest `keep` checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:09d}.pt"
    manifest = path.with_suffix(".json")
    try:
        _atomic_write(path, lambda f: torch.save({"format": FORMAT_VERSION, **state}, f))
        meta = {"format": FORMAT_VERSION, "step": step, "size": path.stat().st_size, "sha256": _sha256(path)}
        _atomic_write(manifest, lambda f: f.write(json.dumps(meta).encode()))
    except OSError as e:
        path.unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        previous = list_checkpoints(directory)
        kept = f"; the previous checkpoint {previous[-1][1]} is intact" if previous else ""
        raise CheckpointError(f"could not write checkpoint {path}: {e.strerror or e}{kept}") from e
    for _, old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    return path


def verify(path: Path) -> str | None:
    """None if `path` matches its manifest; else why not."""
    manifest = path.with_suffix(".json")
    if not manifest.is_file():
        return "its manifest is missing (the write did not finish)"
    try:
        meta = json.loads(manifest.read_text())
        size, sha = int(meta["size"]), str(meta["sha256"])
    except (ValueError, KeyError, TypeError, OSError):
        return "its manifest is unreadable"
    actual = path.stat().st_size
    if actual != size:
        return f"its size is {actual} bytes, the manifest says {size} (truncated?)"
    if _sha256(path) != sha:
        return "its checksum does not match the manifest (corrupted)"
    return None


def load_file(path: Path, check: bool = True) -> dict:
    """Load one checkpoint as data only. With `check`, verify it against its manifest first."""
    if check and (problem := verify(path)):
        raise CheckpointError(f"checkpoint {path} is not valid: {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or foreign files
        raise CheckpointError(f"checkpoint {path} could not be read: {str(e).splitlines()[0]}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a sac-runner checkpoint (format {FORMAT_VERSION})")
    return state


def load_latest(directory: Path) -> tuple[Path, dict] | None:
    """The newest valid checkpoint in `directory`, skipping (with a warning) damaged ones; None if there is none."""
    candidates = list_checkpoints(directory)
    for _, path in reversed(candidates):
        try:
            return path, load_file(path)
        except CheckpointError as e:
            log.warning("%s; trying the previous one", e)
    if candidates:
        raise CheckpointError(f"no valid checkpoint in {directory}: all {len(candidates)} are damaged")
    return None
