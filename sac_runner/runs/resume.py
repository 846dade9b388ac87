"""Where a run continues from, and whether a checkpoint belongs to the same experiment."""
from __future__ import annotations

from pathlib import Path

import yaml

from sac_runner.config.identity import RUN_SETTINGS, config_differences
from sac_runner.config.naming import default_config
from sac_runner.errors import ConfigError
from sac_runner.runs import checkpoint as ckpt
from sac_runner.runs.rundir import RunDir
from sac_runner.runs.tracking import in_wandb_sweep


def resolve_resume(resume: str | None, run_dir: Path) -> tuple[Path, Path | None]:
    """(run dir to write into, checkpoint file or dir to resume from); a run under a W&B sweep agent starts
    fresh (the agent gives each command a new W&B run)."""
    path, source = _resolve_resume(resume, run_dir)
    if source is not None and in_wandb_sweep():
        raise ConfigError(f"resuming {path} under a W&B sweep agent is refused: the agent gives each run a new W&B "
                          "run, so the resumed metrics would be split; resume it outside the sweep (without "
                          "WANDB_SWEEP_ID), or let the agent start a fresh run dir")
    return path, source


def _resolve_resume(resume: str | None, run_dir: Path) -> tuple[Path, Path | None]:
    if resume is None:
        own = RunDir(run_dir).checkpoints
        return run_dir, own if ckpt.has_checkpoint(own) else None
    target = Path(resume).expanduser()
    if target.is_file():
        if target.parent.name != RunDir.CHECKPOINTS:
            raise ConfigError(f"resume={resume!r} is not in a run's {RunDir.CHECKPOINTS}/ folder; give the run dir "
                              f"or one of its {RunDir.CHECKPOINTS}/step_*.pt files")
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
    """The checkpoint's experiment is this run's: every experiment key equal, none added or removed (a key a later
    version of sac-runner added is accepted at its default)."""
    _check_same_experiment(path, state["config"], config)
    if state["trainer"]["step"] > total_steps:
        raise ConfigError(f"total_steps={total_steps} is below the checkpoint's step "
                          f"{state['trainer']['step']}: raise total_steps to extend the run")


def check_resumable(run_dir: Path, config: dict) -> None:
    """Before anything is written into a run dir that holds checkpoints: its config.yaml records the experiment
    this run would continue (the resume itself checks the checkpoint's own record again)."""
    run = RunDir(run_dir)
    if not (run.config.is_file() and ckpt.has_checkpoint(run.checkpoints)):
        return
    try:
        saved = yaml.safe_load(run.config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return  # the checkpoint's own record decides
    if isinstance(saved, dict):
        _check_same_experiment(run.path, saved, config)


def _check_same_experiment(path: Path, saved: dict, config: dict) -> None:
    diffs = config_differences(saved, config, experiment_differences_baseline(config))
    if diffs:
        raise ConfigError(f"cannot resume from {path}: the config differs in {'; '.join(diffs)}. "
                          f"Only run settings ({', '.join(k for k in RUN_SETTINGS if k != 'hydra')}) may change")


def experiment_differences_baseline(config: dict) -> dict:
    """The composed defaults for the run's env and algorithm (flattened): the values keys added since a checkpoint
    was written take."""
    return default_config(str(config["env"]["id"]), str(config["algorithm"]["name"]))
