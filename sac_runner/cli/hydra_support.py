"""Hydra's private API, used in this file only: its error printer replaced by one line per user mistake, and its
run_job preceded by what must happen before Hydra writes into a run dir (validation, the resume target, the lock)."""
from __future__ import annotations

import copy
import difflib
import logging
import os
import re
import sys
from pathlib import Path

import hydra._internal.hydra as hydra_internal
import hydra._internal.utils as hydra_utils
import yaml
from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from sac_runner import algorithms
from sac_runner.cli.common import EXIT_INTERRUPTED, print_error
from sac_runner.config.schema import config_tree
from sac_runner.config.validation import validate
from sac_runner.envs.families import route_messages
from sac_runner.errors import EXIT_USER_ERROR, ConfigError, UserFacingError
from sac_runner.runs import rundir
from sac_runner.runs.resume import check_resumable, resolve_resume
from sac_runner.training.setup import recorded_config


class SweepStopped(KeyboardInterrupt):
    """A sweep job stopped by a signal (after its checkpoint): the sweep stops with it."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message, self.exit_code = message, exit_code

    def __reduce__(self):  # raised in a joblib worker, re-raised in the launcher
        return type(self), (self.message, self.exit_code)


class JobFailed(UserFacingError):
    """Raised out of a job so that the launcher reports it; printed as one line."""

    def __init__(self, message: str, exit_code: int = EXIT_USER_ERROR):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return type(self), (str(self), self.exit_code)


def _guarded_run_job(real_run_job):
    """Hydra's run_job for a single run, preceded by what must come before Hydra writes into the run dir: the
    config is validated, a `resume` target becomes the run dir (so the run logs into its own train.log), and the
    run dir is created and locked here. A run rejected before any work removes the run dir it created."""
    def run_job(**kwargs):
        config = kwargs["config"]
        HydraConfig.instance().set_config(config)
        task_cfg = copy.deepcopy(config)  # what the task function will get, as Hydra's run_job makes it
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        route_messages(None)  # the env check in validate makes the env: MuJoCo's notes go to the log
        try:
            validate(task_cfg)
            wanted = Path(str(OmegaConf.select(config, kwargs["job_dir_key"])))
            try:
                run_dir, _ = resolve_resume(task_cfg.resume, wanted)
            except OSError as e:  # a name the file system refuses (too long, say)
                raise ConfigError(f"output dir {wanted} cannot be used ({e.strerror or e}); choose another with "
                                  "hydra.run.dir=<dir>") from None
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
            try:  # before Hydra rewrites .hydra/: a resume that would change the experiment writes nothing
                check_resumable(run_dir, recorded_config(task_cfg, run_dir))
            except ConfigError:
                lock.release()
                rundir.remove_if_unused(run_dir, created)
                raise
        except ConfigError as e:
            raise JobFailed(str(e)) from None
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


def did_you_mean(key: str) -> str | None:
    """For a key the schema does not have: `key is not a known key; did you mean ...?`, or the keys its group takes
    when none is close (None: the key is known, the error is another)."""
    parent, _, leaf = key.rpartition(".")
    trees = [config_tree(name) for name in algorithms.names()]
    known: list[str] = []
    for tree in trees:
        node = tree
        for part in parent.split(".") if parent else []:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            known += [k for k in node if k not in known]
    if not known or leaf in known:
        return None
    close = difflib.get_close_matches(leaf, known, n=2, cutoff=0.6)
    prefix = f"{parent}." if parent else ""
    if not close:
        return f"{key} is not a known key; {parent or 'the config'} takes: {', '.join(known)}"
    return f"{key} is not a known key; did you mean {' or '.join(prefix + c for c in close)}?"


def one_line(ex: BaseException) -> str:
    """A Hydra or OmegaConf error message folded into one line; a misspelt key gets `did you mean` instead of
    Hydra's advice to append it with `+` (which the schema then refuses)."""
    misspelt = re.search(r"Could not override '([^']+)'", str(ex))
    if misspelt and (hint := did_you_mean(misspelt.group(1))):
        return hint
    text = str(ex).split("Config search path")[0]
    cause = ex.__cause__
    if cause is not None and type(cause).__module__.startswith("omegaconf") and str(cause) not in text:
        text = f"{text}\n{cause}"
    full_key = re.search(r"full_key: (\S+)", text)
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not re.match(r"(full_key|object_type|reference_type)\b", ln)]
    message = " ".join(lines)
    message = re.sub(r"^Error merging override (\S+?)=(\S+) Value '.*?' of type '\w+' could not be converted to (\w+)",
                     lambda m: f"{m.group(1)}={m.group(2)} is not allowed: expected a value of type {m.group(3)}",
                     message)
    message = re.sub(r"Available options in '([^']+)':\s*", r"Available options in '\1': ", message)
    message = re.sub(r"(Available options in '[^']+': )(.*)", lambda m: m.group(1) + ", ".join(m.group(2).split()),
                     message)
    if full_key and full_key.group(1) not in message:
        message = f"{full_key.group(1)}: {message}"
    return message


def _report_errors(func):
    """Replaces Hydra's error printer: one line for the user's mistakes, a traceback for our bugs."""
    try:
        return func()
    except JobFailed as e:
        print(f"sac-run: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except SweepStopped as e:
        print_error("sac-run", e.message, e.exit_code)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C while training stops at once
        print("sac-run: interrupted by a second Ctrl-C; the last checkpoint (if any) is kept, and rerunning the same "
              "command resumes from it", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except yaml.YAMLError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"sac-run: error: {_yaml_error(e)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:

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


def install() -> None:
    """Hydra reports errors through us, and a single run's job is guarded (see _guarded_run_job)."""

    hydra_utils.run_and_report = _report_errors
    hydra_internal.run_and_report = _report_errors
    if not getattr(hydra_internal.run_job, "_guarded", False):
        hydra_internal.run_job = _guarded_run_job(hydra_internal.run_job)
        hydra_internal.run_job._guarded = True




# ---- a sweep's jobs, without launching them ----

def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The override list of each job `sac-run -m <overrides>` would launch, as Hydra's basic sweeper expands them
    (a preset's hydra.sweeper.params first, then the command line)."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    with initialize_config_module("sac_runner.conf", version_base="1.3"):
        cfg = compose("config", fixed, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False) if cfg.hydra.sweeper.get("params") \
        else {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    batches = BasicSweeper.split_arguments(parser.parse_overrides(lines), None)
    return [job for batch in batches for job in batch]


def job_config(overrides: list[str]):
    with initialize_config_module("sac_runner.conf", version_base="1.3"):
        return compose("config", overrides)
