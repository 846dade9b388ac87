"""`sac-run`: Hydra composes conf/, the schema validates, the Trainer runs. User mistakes end in one line."""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from .envs import use_headless_rendering

use_headless_rendering()  # before anything imports MuJoCo's renderer

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from . import joblog  # noqa: E402
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
        summary = Trainer(cfg).train()
    except (ConfigError, CheckpointError) as e:
        _fail(str(e), EXIT_USER_ERROR, hydra_cfg.mode)
    except NonFiniteError as e:
        _fail(str(e), EXIT_NON_FINITE, hydra_cfg.mode)
    except TrainingInterrupted as e:
        _fail(str(e), 128 + e.signum, hydra_cfg.mode)
    return summary["eval/final_return"]  # the value a Hydra sweeper optimizes


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
    except Exception as e:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not isinstance(e, (HydraException, OmegaConfBaseException)):
            raise
        print(f"sac-run: error: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _install_error_reporting() -> None:
    import hydra._internal.hydra as hydra_internal
    import hydra._internal.utils as hydra_utils

    hydra_utils.run_and_report = _report_errors
    hydra_internal.run_and_report = _report_errors


def main() -> None:
    register_configs()
    _install_error_reporting()
    if any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in sys.argv[1:]) and "--resolve" not in sys.argv:
        sys.argv.append("--resolve")  # --cfg shows values: the budgets an env.id gets are resolved from presets
    run()


if __name__ == "__main__":
    main()
