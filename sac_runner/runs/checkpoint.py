"""Checkpoints: crash-consistent writes, verified loads, the last K kept.

Each checkpoint is `step_<N>.pt` (state dicts, tensors and plain containers, readable with
`torch.load(weights_only=True)`, so loading never runs code from the file) beside `step_<N>.json`
(its size and SHA-256). Write order: the state goes to `.step_<N>.pt.tmp` (fsynced), then the manifest is
committed (temporary file, fsync, rename), and the `.pt` is renamed into place last. A kill at any moment leaves:
- temporary files only: removed by `recover`, the previous checkpoint is used;
- a committed manifest beside its `.step_<N>.pt.tmp`: `recover` completes the checkpoint (renames it) when the
  temporary file matches the manifest, else removes both;
- a finished checkpoint.
A `.pt` without a manifest (an earlier version wrote the manifest last) is accepted when it loads with
`weights_only=True` as a checkpoint of this format; its manifest is then written. A file that fails its check is
moved to `checkpoints/damaged/` (named in the log), so it never counts toward the checkpoints kept.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Callable

import torch

from sac_runner.errors import CheckpointError
from sac_runner.runs.atomic import fsync_dir as _fsync_dir
from sac_runner.runs.atomic import temporary_name as _tmp
from sac_runner.runs.atomic import write_synced as _write_synced
from sac_runner.runs.rundir import CHECKPOINT_NAME, list_checkpoints  # noqa: F401 (list_checkpoints: part of this API)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DAMAGED_DIR = "damaged"
_NAME = CHECKPOINT_NAME
_TMP = re.compile(r"^\.(step_\d+\.(?:pt|json))\.tmp$")

# Tests set this to stop a write at an exact moment: called with the phase name and the file just written.
# Phases, in order: "pt_tmp" (state in the temporary file), "manifest_tmp" (manifest in its temporary file),
# "manifest" (manifest committed, the .pt not yet renamed), "pt" (checkpoint complete, old ones not yet removed).
fault_hook: Callable[[str, Path], None] | None = None


def _phase(name: str, path: Path) -> None:
    if fault_hook is not None:
        fault_hook(name, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(step: int, path: Path) -> dict:
    return {"format": FORMAT_VERSION, "step": step, "size": path.stat().st_size, "sha256": _sha256(path)}


def _commit_manifest(manifest: Path, meta: dict, phase: bool = True) -> None:
    tmp = _tmp(manifest)
    _write_synced(tmp, lambda f: f.write(json.dumps(meta).encode()))
    if phase:
        _phase("manifest_tmp", tmp)
    os.replace(tmp, manifest)
    _fsync_dir(manifest.parent)


def io_failure(e: BaseException) -> str | None:
    """Why a write failed when the cause is the disk or the file system (torch's writer raises a RuntimeError
    chained on the OSError); None for anything else."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(e)
    if isinstance(e, RuntimeError) and ("PytorchStreamWriter" in text or "inline_container" in text):
        return "file write failed (" + text.splitlines()[0] + ")"
    return None


def has_checkpoint(directory: Path) -> bool:
    """A finished checkpoint in `directory`, or one whose manifest is committed (`recover` completes it)."""
    if list_checkpoints(directory):
        return True
    return any((directory / m.group(1)).with_suffix(".json").is_file()
               for p in directory.glob(".step_*.pt.tmp") if (m := _TMP.match(p.name)))


def save(directory: Path, step: int, state: dict, keep: int) -> Path:
    """Write `state` crash-consistently as the checkpoint for `step`; keep the newest `keep` checkpoints
    up to this step."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:09d}.pt"
    manifest = path.with_suffix(".json")
    tmp = _tmp(path)
    try:
        _write_synced(tmp, lambda f: torch.save({"format": FORMAT_VERSION, **state}, f))
        _phase("pt_tmp", tmp)
        meta = _manifest(step, tmp)
        path.unlink(missing_ok=True)  # a stale file of the same step (an earlier attempt) must not outlive its manifest
        _commit_manifest(manifest, meta)
        _phase("manifest", manifest)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except Exception as e:
        for leftover in (tmp, _tmp(manifest)):
            leftover.unlink(missing_ok=True)
        if not path.exists():
            manifest.unlink(missing_ok=True)
        reason = io_failure(e)
        if reason is None:
            raise
        previous = [p for s, p in list_checkpoints(directory) if s != step]
        kept = f"; the previous checkpoint {previous[-1]} is intact" if previous else "; no earlier checkpoint exists"
        raise CheckpointError(f"could not write checkpoint {path}: {reason}{kept}") from e
    _phase("pt", path)
    older = [p for s, p in list_checkpoints(directory) if s < step]
    for old in older[: max(0, len(older) - (keep - 1))]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    return path


def recover(directory: Path) -> None:
    """Finish or clear what an interrupted `save` left in `directory`. Only the run dir's lock holder may call it."""
    if not directory.is_dir():
        return
    for tmp in sorted(directory.iterdir()):
        m = _TMP.match(tmp.name)
        if not m or not tmp.is_file():
            continue
        final = directory / m.group(1)
        if final.suffix == ".pt" and final.with_suffix(".json").is_file() and not final.exists() \
                and verify(tmp, final.with_suffix(".json")) is None:
            os.replace(tmp, final)
            _fsync_dir(directory)
            log.info("Completed checkpoint %s (the run stopped between writing its manifest and renaming it)", final)
        else:
            tmp.unlink(missing_ok=True)
            log.info("Removed %s, left by a checkpoint write that did not finish", tmp)
    for manifest in directory.glob("step_*.json"):
        if not manifest.with_suffix(".pt").exists():
            manifest.unlink(missing_ok=True)


def verify(path: Path, manifest: Path | None = None) -> str | None:
    """None if `path` matches its manifest; else why not."""
    manifest = manifest or path.with_suffix(".json")
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


def _load(path: Path) -> dict:
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: anything else is damaged or foreign
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint (not a file torch.save wrote)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise CheckpointError(f"checkpoint {path} could not be read: it holds objects other than tensors and "
                                  "plain containers, refused because loading them could run code") from None
        raise CheckpointError(f"checkpoint {path} could not be read: {str(e).splitlines()[0]}") from e
    except Exception as e:  # torch raises several types for damaged or foreign files
        raise CheckpointError(f"checkpoint {path} could not be read: {str(e).splitlines()[0]}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a sac-runner checkpoint (format {FORMAT_VERSION})")
    return state


def load_file(path: Path, check: bool = True) -> dict:
    """Load one checkpoint as data only. With `check`, verify it against its manifest first; a checkpoint
    without a manifest is accepted if it loads (data only), and its manifest is then written."""
    manifest = path.with_suffix(".json")
    if not check:
        return _load(path)
    if not manifest.exists():
        state = _load(path)
        m = _NAME.match(path.name)
        if m is None:  # a file named by the user (resume=<file>): loading it was the check
            return state
        step = int(m.group(1))
        if state.get("trainer", {}).get("step", step) != step:
            raise CheckpointError(f"checkpoint {path} is not valid: it holds step {state['trainer']['step']}")
        try:
            _commit_manifest(manifest, _manifest(step, path), phase=False)
            log.info("Checkpoint %s had no manifest; it loads as data, so its manifest was written", path)
        except OSError as e:
            log.warning("Checkpoint %s has no manifest and none could be written (%s)", path, e.strerror or e)
        return state
    if problem := verify(path):
        raise CheckpointError(f"checkpoint {path} is not valid: {problem}")
    return _load(path)


def move_aside(path: Path) -> Path:
    """Move a damaged checkpoint (and its manifest) to `damaged/` beside it; return its new path."""
    target_dir = path.parent / DAMAGED_DIR
    target_dir.mkdir(exist_ok=True)
    target, n = target_dir / path.name, 1
    while target.exists():
        target, n = target_dir / f"{path.stem}.{n}{path.suffix}", n + 1
    os.replace(path, target)
    manifest = path.with_suffix(".json")
    if manifest.exists():
        os.replace(manifest, target.with_suffix(".json"))
    return target


def load_latest(directory: Path) -> tuple[Path, dict] | None:
    """The newest valid checkpoint in `directory`; damaged ones are moved to `damaged/` with a warning.
    None if there is none."""
    recover(directory)
    for _, path in reversed(list_checkpoints(directory)):
        try:
            return path, load_file(path)
        except CheckpointError as e:
            try:
                where = f"moved to {move_aside(path)}"
            except OSError as move_error:
                where = f"could not be moved aside ({move_error.strerror or move_error})"
            log.warning("%s; %s, trying the previous one", e, where)
    return None
