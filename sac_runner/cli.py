"""`sac-run`: Hydra composes conf/, the schema validates, the Trainer runs. User mistakes end in one line."""
from __future__ import annotations

import copy
import logging
import os
import re
import sys
from pathlib import Path

from .envs import use_headless_rendering

use_headless_rendering()  # before anything imports MuJoCo's renderer

import hydra  # noqa: E402
import yaml  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from . import joblog, rundir  # noqa: E402
from .checkpoint import CheckpointError  # noqa: E402
from .config import ConfigError, register_configs, validate  # noqa: E402

log = logging.getLogger("sac_runner")
logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL's start-up notes are noise here

EXIT_USER_ERROR = 2
EXIT_NON_FINITE = 3


class UserError(Exception):
    """Raised out of a job so that the launcher reports it; printed as one line."""

    def __init__(self, message: str, exit_code: int = EXIT_USER_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


@hydra.main(version_base="1.3", config_path="pkg://sac_runner.conf", config_name="config")
def run(cfg: DictConfig) -> float | None:
    from .allocator import keep_freed_memory
    from .trainer import NonFiniteError, Trainer, TrainingInterrupted

    keep_freed_memory()  # process-wide malloc setting (see allocator.py)

    hydra_cfg = HydraConfig.get()
    cfg.run_dir = cfg.run_dir or hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:  # W&B: the sweep id and the swept key=values as tags; console lines carry the job's name
        joblog.join_sweep(cfg, hydra_cfg)
    joblog.route_mujoco_messages(cfg.run_dir)
    try:
        validate(cfg)
        joblog.write_header(cfg, joblog.command_line(hydra_cfg, multirun))
        with _locked_run_dir(cfg):
            summary = Trainer(cfg).train()
    except (ConfigError, CheckpointError) as e:
        _fail(str(e), EXIT_USER_ERROR, hydra_cfg.mode)
    except NonFiniteError as e:
        _fail(str(e), EXIT_NON_FINITE, hydra_cfg.mode)
    except TrainingInterrupted as e:
        _fail(str(e), 128 + e.signum, hydra_cfg.mode)
    return summary["eval/final_return"]  # the value a Hydra sweeper optimizes


def _locked_run_dir(cfg: DictConfig) -> rundir.RunDirLock:
    """Lock the dir this run writes into (its own, or the one `resume` names), then finish or clear what an
    interrupted checkpoint write left there. A single run already holds it (see `_guarded_run_job`)."""
    from .checkpoint import recover
    from .resume import resolve_resume

    target, _ = resolve_resume(cfg.resume, Path(cfg.run_dir))
    lock = rundir.RunDirLock.acquire(target)
    try:
        recover(target / "checkpoints")
    except BaseException:
        lock.release()
        raise
    return lock


def _guarded_run_job(real_run_job):
    """Hydra's run_job for a single run, preceded by what must come before Hydra writes into the run dir: the
    config is validated, a `resume` target becomes the run dir (so the run logs into its own train.log), and the
    run dir is created and locked here. A run rejected before any work removes the run dir it created."""
    def run_job(**kwargs):
        from omegaconf import OmegaConf, open_dict, read_write

        from .resume import resolve_resume

        config = kwargs["config"]
        HydraConfig.instance().set_config(config)
        task_cfg = copy.deepcopy(config)  # what the task function will get, as Hydra's run_job makes it
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        try:
            validate(task_cfg)
            run_dir, _ = resolve_resume(task_cfg.resume, Path(str(OmegaConf.select(config, kwargs["job_dir_key"]))))
            if task_cfg.resume is not None:
                with read_write(config.hydra), open_dict(config.hydra):
                    OmegaConf.update(config, kwargs["job_dir_key"], str(run_dir))
            created = rundir.create(run_dir)
            try:
                lock = rundir.RunDirLock.acquire(run_dir)
            except rundir.RunDirBusy:
                raise  # the dir is another process's now, whoever made it
            except ConfigError:
                rundir.remove_if_unused(run_dir, created)
                raise
        except ConfigError as e:
            raise UserError(str(e)) from None
        try:
            return real_run_job(**kwargs)
        except SystemExit as e:
            if e.code == EXIT_USER_ERROR:
                _close_log_files(run_dir)
                rundir.remove_if_unused(run_dir, created)
            raise
        finally:
            lock.release()

    return run_job


def _close_log_files(run_dir: Path) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        in_run_dir = os.path.dirname(getattr(handler, "baseFilename", "")) == os.path.abspath(run_dir)
        if isinstance(handler, logging.FileHandler) and in_run_dir:
            root.removeHandler(handler)
            handler.close()


def _fail(message: str, exit_code: int, mode: RunMode) -> None:
    """End the job on a user-facing problem. A single run prints one line and exits; a sweep job raises
    so that the launcher records it and goes on with the other jobs."""
    if mode == RunMode.MULTIRUN:
        log.error("%s", message)
        raise UserError(message, exit_code)
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)  # the run's log file keeps the reason too
    kind = "" if exit_code > 128 else "error: "  # a stop on a signal is not a mistake
    print(f"sac-run: {kind}{message}", file=sys.stderr)
    sys.exit(exit_code)


def one_line(ex: BaseException) -> str:
    """A Hydra or OmegaConf error message folded into one line."""
    text = str(ex).split("Config search path")[0]
    cause = ex.__cause__
    if cause is not None and type(cause).__module__.startswith("omegaconf") and str(cause) not in text:
        text = f"{text}\n{cause}"
    full_key = re.search(r"full_key: (\S+)", text)
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not re.match(r"(full_key|object_type|reference_type)\b", ln)]
    message = " ".join(lines)
    message = re.sub(r"^Error merging override (\S+?)=(\S+) Value '.*?' of type '\w+' could not be converted to (\w+)",
                     lambda m: f"{m.group(1)}={m.group(2)} is not allowed: expected a value of type {m.group(3)}", message)
    message = re.sub(r"Available options in '([^']+)':\s*", r"Available options in '\1': ", message)
    message = re.sub(r"(Available options in '[^']+': )(.*)", lambda m: m.group(1) + ", ".join(m.group(2).split()), message)
    if full_key and full_key.group(1) not in message:
        message = f"{full_key.group(1)}: {message}"
    return message


def _report_errors(func):
    """Replaces Hydra's error printer: one line for the user's mistakes, a traceback for our bugs."""
    try:
        return func()
    except UserError as e:
        print(f"sac-run: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except yaml.YAMLError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"sac-run: error: {_yaml_error(e)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not isinstance(e, (HydraException, OmegaConfBaseException)):
            raise
        print(f"sac-run: error: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _yaml_error(e: yaml.YAMLError) -> str:
    """A YAML syntax error in a config file, in one line: file, line, column and the problem."""
    mark = getattr(e, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else "a config file"
    what = "; ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
    return f"{where} is not valid YAML: {' '.join(what.split())}"


def _install_error_reporting() -> None:
    import hydra._internal.hydra as hydra_internal
    import hydra._internal.utils as hydra_utils

    hydra_utils.run_and_report = _report_errors
    hydra_internal.run_and_report = _report_errors
    if not getattr(hydra_internal.run_job, "_guarded", False):
        hydra_internal.run_job = _guarded_run_job(hydra_internal.run_job)
        hydra_internal.run_job._guarded = True


def main() -> None:
    register_configs()
    _install_error_reporting()
    if any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in sys.argv[1:]) and "--resolve" not in sys.argv:
        sys.argv.append("--resolve")  # --cfg shows values: the budgets an env.id gets are resolved from presets
    run()


if __name__ == "__main__":
    main()
