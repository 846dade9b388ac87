"""A run's files written during training: checkpoints (the whole state, for exact resume), model.pt and
best_model.pt (networks and config), all refused while a parameter is not finite."""
from __future__ import annotations

import logging
from pathlib import Path

from sac_runner.errors import ConfigError, NonFiniteError
from sac_runner.runs import checkpoint as ckpt
from sac_runner.runs.models import save_model
from sac_runner.runs.resume import check_compatible, load_checkpoint
from sac_runner.runs.rundir import RunDir

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, run_dir: RunDir, keep: int, agent):
        self.run_dir, self.keep, self.agent = run_dir, keep, agent

    def kept(self) -> str:
        """What the run leaves to resume from, for an error message."""
        found = ckpt.list_checkpoints(self.run_dir.checkpoints)
        return f"the last good checkpoint is kept: {found[-1][1]}" if found else "no checkpoint was written"

    def latest(self) -> Path | None:
        found = ckpt.list_checkpoints(self.run_dir.checkpoints)
        return found[-1][1] if found else None

    def check_finite(self, step: int, what: str) -> None:
        bad = self.agent.non_finite_parameters()
        if bad:
            raise NonFiniteError(f"non-finite values in {', '.join(bad)} at step {step}; not {what}, {self.kept()}")

    def save(self, step: int, state: dict, tracker) -> Path:
        self.check_finite(step, "checkpointing")
        tracker.metrics.sync()  # the rows up to this step are on disk before the checkpoint that they match
        path = ckpt.save(self.run_dir.checkpoints, step, state, keep=self.keep)
        tracker.log_checkpoint(path, step)
        return path

    def save_model(self, path: Path, state: dict, step: int) -> Path:
        self.check_finite(step, f"writing {path.name}")
        return save_model(path, state, self.kept())

    def load(self, source: Path | None, named: str | None, config: dict, total_steps: int) -> tuple[Path, dict] | None:
        """The checkpoint to resume from (None: start anew), checked against this run's config. `named`: the
        resume setting when the user gave one (a run dir without a valid checkpoint is then an error)."""
        if source is None:
            return None
        found = load_checkpoint(source)
        if found is None:
            if named is not None:  # asked for by name: starting that run over would drop its metrics
                raise ConfigError(f"resume={named!r}: no valid checkpoint in {source} (damaged ones were moved to "
                                  f"{source / ckpt.DAMAGED_DIR})")
            return None
        path, state = found
        check_compatible(path, state, config, total_steps)
        return path, state


def resume_failed(path: Path, e: Exception) -> ConfigError:
    return ConfigError(f"cannot resume from {path}: its contents do not fit this version of sac-runner or this run "
                       f"({type(e).__name__}: {e}); start a new run dir, or resume with the version that wrote it")

