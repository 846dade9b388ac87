"""What each run under some paths is doing: its status, how far it got, its last and best evaluation, its W&B group.

Statuses:
- running: a live process holds the run dir's lock;
- finished: model.pt is written and the newest checkpoint reached total_steps;
- stopped: checkpoints to resume from, no process on it (interrupted, preempted, killed);
- failed: the run ended on an error (its train.log's last error line says which), with nothing to resume;
- damaged: its config or metrics cannot be read, or a checkpoint was moved to checkpoints/damaged/.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sac_runner.analysis.runs import SkipRun, load_config
from sac_runner.runs.rundir import RunDir

STATUSES = ("running", "finished", "stopped", "failed", "damaged")
SKIPPED_DIRS = {"wandb", "checkpoints", "videos", "eval", "report", ".hydra"}


@dataclass
class RunStatus:
    path: Path
    status: str
    step: int | None = None
    total: int | None = None
    last_eval: float | None = None
    best_eval: float | None = None
    group: str | None = None
    note: str = ""  # why failed or damaged


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run dirs (a config.yaml, a metrics file, checkpoints or a lock) at or under each path, in name order."""
    found: list[Path] = []
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            continue
        for here, dirs, _ in os.walk(root):
            run = RunDir(here)
            if run.config.is_file() or run.metrics.is_file() or run.checkpoints.is_dir() or \
                    (run.path / RunDir.LOCK).exists():
                found.append(run.path)
                dirs.clear()  # a run dir's own folders hold no runs
            else:
                dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
    return sorted(dict.fromkeys(found))


def _evals(run: RunDir, learning_starts: int) -> tuple[int | None, float | None, float | None]:
    """(last step, last eval, best eval after learning_starts) from the metrics file; ValueError if unreadable."""
    step = last = best = None
    if not run.metrics.is_file():
        return step, last, best
    with open(run.metrics, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a row cut off by an interruption
            step = row.get("global_step", step)
            value = row.get("eval/return_mean")
            if isinstance(value, (int, float)) and math.isfinite(value):
                last = float(value)
                if step is not None and step > learning_starts:
                    best = last if best is None else max(best, last)
    return step, last, best


def _last_error(run: RunDir) -> str:
    try:
        lines = run.log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln.split("[ERROR] ", 1)[1] for ln in lines if "[ERROR] " in ln]
    return errors[-1] if errors else ""


def describe(path: Path, group_of=None) -> RunStatus:
    """The status of one run dir; `group_of(config)` names its W&B group (None: not shown)."""
    run = RunDir(path)
    if run.is_locked():
        status = RunStatus(path, "running")
    else:
        status = RunStatus(path, "stopped")
    try:
        config = load_config(run.path)
    except SkipRun as e:
        return RunStatus(path, "running" if status.status == "running" else "damaged", note=str(e))
    total = config.get("total_steps")
    learning_starts = config.get("learning_starts") or 0
    status.total = total if isinstance(total, int) else None
    status.step, status.last_eval, status.best_eval = _evals(run, learning_starts)
    if group_of is not None:
        status.group = config.get("logger.group") or group_of(config)
    steps = run.checkpoint_steps()
    if status.status == "running":
        return status
    if (run.checkpoints / "damaged").is_dir() and any((run.checkpoints / "damaged").iterdir()):
        status.status, status.note = "damaged", f"damaged checkpoints in {run.checkpoints / 'damaged'}"
    elif run.model.is_file() and steps and status.total is not None and steps[-1] >= status.total:
        status.status = "finished"
    elif not steps:
        status.status, status.note = "failed", _last_error(run) or "no checkpoint was written"
    elif error := _last_error(run):
        status.note = error
    return status


def format_table(statuses: list[RunStatus], relative_to: Path | None = None) -> str:
    def num(v: float | None) -> str:
        return f"{v:.1f}" if v is not None else "-"

    def where(p: Path) -> str:
        try:
            return str(p.relative_to(relative_to)) if relative_to else str(p)
        except ValueError:
            return str(p)

    rows = [("STATUS", "STEP", "TOTAL", "LAST EVAL", "BEST EVAL", "W&B GROUP", "RUN DIR")]
    for s in statuses:
        rows.append((s.status, str(s.step) if s.step is not None else "-", str(s.total) if s.total else "-",
                     num(s.last_eval), num(s.best_eval), s.group or "-",
                     where(s.path) + (f"  ({s.note})" if s.note else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    right = {1, 2, 3, 4}
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells + [r[-1]]))
    return "\n".join(lines)


def count(statuses: list[RunStatus]) -> dict[str, Any]:
    return {k: sum(s.status == k for s in statuses) for k in STATUSES if any(s.status == k for s in statuses)}
