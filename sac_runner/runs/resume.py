"""Where a run continues from, and whether a checkpoint belongs to the same experiment."""
from __future__ import annotations

from pathlib import Path

from sac_runner.config.identity import RUN_SETTINGS, config_differences
from sac_runner.errors import ConfigError
from sac_runner.runs import checkpoint as ckpt
from sac_runner.runs.rundir import RunDir


def resolve_resume(resume: str | None, run_dir: Path) -> tuple[Path, Path | None]:
    """(run dir to write into, checkpoint file or dir to resume from)."""
    if resume is None:
        own = RunDir(run_dir).checkpoints
        return run_dir, own if ckpt.has_checkpoint(own) else None
    target = Path(resume).expanduser()
    if target.is_file():
        return RunDir.of_checkpoint(target).path, target
    if target.is_dir():
        ckpt_dir = RunDir(target).checkpoints if RunDir(target).checkpoints.is_dir() else target
        if not ckpt.has_checkpoint(ckpt_dir):
            raise ConfigError(f"resume={resume!r}: no checkpoints (step_*.pt) found in {ckpt_dir}")
        return (ckpt_dir.parent if ckpt_dir.name == RunDir.CHECKPOINTS else ckpt_dir), ckpt_dir
    raise ConfigError(f"resume={resume!r}: no such file or directory (give a run dir or a step_*.pt file)")


def load_checkpoint(source: Path) -> tuple[Path, dict] | None:
    """A checkpoint file, or the newest valid one of a checkpoint dir (None when the dir has none)."""
    if source.is_file():
        return source, ckpt.load_file(source)
    return ckpt.load_latest(source)


def check_compatible(path: Path, state: dict, config: dict, total_steps: int) -> None:
    diffs = config_differences(state["config"], config)
    if diffs:
        raise ConfigError(f"cannot resume from {path}: the config differs in {'; '.join(diffs)}. "
                          f"Only run settings ({', '.join(k for k in RUN_SETTINGS if k != 'hydra')}) may change")
    if state["trainer"]["step"] > total_steps:
        raise ConfigError(f"total_steps={total_steps} is below the checkpoint's step "
                          f"{state['trainer']['step']}: raise total_steps to extend the run")
