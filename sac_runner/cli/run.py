"""`sac-run`: Hydra composes conf/, the schema validates, the Trainer runs. User mistakes end in one line."""
from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from sac_runner.cli.common import stop_during_start_up, use_headless_rendering

stop_during_start_up("sac-run", sweep=any(a in ("-m", "--multirun") for a in sys.argv[1:]))  # before slow imports
use_headless_rendering()  # before anything imports MuJoCo's renderer

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from sac_runner.cli import hydra_support, joblog  # noqa: E402
from sac_runner.cli.common import print_error, run_tool  # noqa: E402
from sac_runner.cli.dry_run import main as dry_run  # noqa: E402
from sac_runner.cli.help import help_text  # noqa: E402
from sac_runner.cli.hydra_support import JobFailed, SweepStopped  # noqa: E402
from sac_runner.cli.process import keep_freed_memory  # noqa: E402
from sac_runner.config.registration import register_configs  # noqa: E402
from sac_runner.config.validation import validate  # noqa: E402
from sac_runner.envs.families import route_messages  # noqa: E402
from sac_runner.errors import EXIT_USER_ERROR, TrainingInterrupted, UserFacingError  # noqa: E402
from sac_runner.runs import rundir  # noqa: E402
from sac_runner.runs.checkpoint import recover  # noqa: E402
from sac_runner.runs.resume import resolve_resume  # noqa: E402
from sac_runner.runs.rundir import RunDir  # noqa: E402
from sac_runner.training.trainer import Trainer  # noqa: E402

log = logging.getLogger("sac_runner")


@hydra.main(version_base="1.3", config_path="pkg://sac_runner.conf", config_name="config")
def run(cfg: DictConfig) -> float | None:
    keep_freed_memory()  # process-wide malloc setting (cli/process.py)

    hydra_cfg = HydraConfig.get()
    cfg.run_dir = cfg.run_dir or hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:  # W&B: the sweep id and the swept key=values as tags; console lines carry the job's name
        joblog.join_sweep(cfg, hydra_cfg)
    route_messages(cfg.run_dir)
    joblog.to_console(f"run dir: {cfg.run_dir}")  # train.log's header names it too
    try:
        validate(cfg)
        joblog.write_header(cfg, joblog.command_line(hydra_cfg, multirun))
        with _locked_run_dir(cfg):
            summary = Trainer(cfg).train()
    except TrainingInterrupted as e:
        _fail(f"stopped by {signal.Signals(e.signum).name} at step {e.step}; checkpoint saved to {e.path}. "
              f"Resume with: {joblog.resume_command(hydra_cfg, multirun, cfg.run_dir)}", e.exit_code, hydra_cfg.mode)
    except UserFacingError as e:
        _fail(str(e), e.exit_code, hydra_cfg.mode)
    return summary["eval/return_mean"]  # the value a Hydra sweeper optimizes


def _locked_run_dir(cfg: DictConfig) -> rundir.RunDirLock:
    """Lock the dir this run writes into (its own, or the one `resume` names), then finish or clear what an
    interrupted checkpoint write left there. A single run already holds it (see `_guarded_run_job`)."""
    target, _ = resolve_resume(cfg.resume, Path(cfg.run_dir))
    lock = rundir.RunDirLock.acquire(target)
    try:
        recover(RunDir(target).checkpoints)
    except BaseException:
        lock.release()
        raise
    return lock


def _fail(message: str, exit_code: int, mode: RunMode) -> None:
    """End the job on a user-facing problem. A single run prints one line and exits; a sweep job raises so that
    the launcher records it and goes on with the other jobs, unless it was stopped by a signal: then the whole
    sweep stops (SweepStopped gets past the launcher, which records only Exceptions)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)  # the run's log file keeps the reason too
    if mode == RunMode.MULTIRUN:
        if exit_code > 128:
            raise SweepStopped(message, exit_code)  # printed once, by the error reporter
        log.error("%s", message)
        raise JobFailed(message, exit_code)
    print_error("sac-run", message, exit_code)
    sys.exit(exit_code)


def main() -> None:
    if any(a in ("--help", "-h") for a in sys.argv[1:]):
        print(help_text())
        return
    register_configs()
    hydra_support.install()
    if "--dry-run" in sys.argv[1:]:
        sys.exit(run_tool("sac-run", lambda: dry_run(sys.argv[1:])))
    if any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in sys.argv[1:]) and "--resolve" not in sys.argv:
        sys.argv.append("--resolve")  # --cfg shows values: the budgets an env.id gets are resolved from presets
    try:
        run()
    except ValueError as e:  # Hydra refuses some flag combinations before it reports errors through us
        if "Only one of" not in str(e):
            raise
        print_error("sac-run", f"{e}: --cfg, --info and --shell-completion show one job and cannot be combined "
                    "with -m/--multirun; drop -m to see the first job's config")
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
