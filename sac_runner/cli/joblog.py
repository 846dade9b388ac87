"""What a sac-run job says and where: the job's name on each console line of a sweep, and a train.log header
naming what runs where."""
from __future__ import annotations

import logging
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import torch
from omegaconf import OmegaConf

from sac_runner.config import identity as experiment
from sac_runner.config import naming, sweeps

log = logging.getLogger("sac_runner")


# ---- sweeps ----

def sweep_id(sweep_dir: str | Path) -> str:
    """multirun/2026-11-24/21-05-09 -> sweep_2026-11-24_21-05-09"""
    return "sweep_" + "_".join(Path(sweep_dir).parts[-2:])


def job_name(swept: Iterable[str], num: int) -> str:
    """The swept key=value pairs with short keys, e.g. `target_entropy_scale=0.5 seed=1`; else `job <num>`."""
    items = dict(line.split("=", 1) for line in swept)
    return " ".join(experiment.short_items(items)) or f"job {num}"


def join_sweep(cfg: Any, hydra_cfg: Any) -> str:
    """A multirun job: the sweep id and each swept key=value become W&B tags, the sweep id the job_type (unless
    set), and every console line carries the job's name (returned)."""
    sweep = sweep_id(hydra_cfg.sweep.dir)
    swept = sweeps.swept_overrides(hydra_cfg.sweep.dir, list(hydra_cfg.overrides.task))
    cfg.logger.tags = list(dict.fromkeys([*cfg.logger.tags, sweep, *swept]))
    if cfg.logger.job_type is None:
        cfg.logger.job_type = experiment.shorten(sweep, experiment.TAG_LIMIT)
    name = job_name(swept, hydra_cfg.job.num)
    label_console(name)
    logging.captureWarnings(True)  # Python warnings too go through the labelled handlers
    return name


def label_console(name: str) -> None:
    """Prefix the message of every console handler of the root logger with [name] (train.log stays as it is)."""
    tag = f"[{name}] ".replace("%", "%%")
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            fmt = h.formatter._fmt if h.formatter and h.formatter._fmt else "%(message)s"
            if tag not in fmt:
                h.setFormatter(logging.Formatter(fmt.replace("%(message)s", tag + "%(message)s"),
                                                 h.formatter.datefmt if h.formatter else None))


# ---- train.log header ----

def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def header_lines(cfg: Any, command: str) -> list[str]:

    device = cfg.device
    if device == "auto":
        device = f"{'cuda' if torch.cuda.is_available() else 'cpu'} (device=auto)"
    threads = cfg.threads if cfg.threads > 0 else torch.get_num_threads()
    versions = ", ".join(f"{p} {_version(p)}" for p in ("sac-runner", "torch", "gymnasium", "mujoco"))
    diffs = naming.differences_from_defaults(cfg)
    return [
        f"command: {command}",
        f"run dir: {cfg.run_dir}",
        f"versions: {versions}, python {platform.python_version()}",
        f"device: {device}, threads: {threads}",
        f"experiment: {cfg.env.id} {cfg.algorithm.name} seed={cfg.seed}; differs from the defaults in: "
        + (", ".join(f"{k}={experiment.format_value(v)}" for k, v in diffs.items()) or "nothing"),
    ]


def command_line(hydra_cfg: Any, multirun: bool) -> str:
    if multirun:  # the single run that repeats this job
        args = " ".join(shlex.quote(o) for o in hydra_cfg.overrides.task)
        return f"sac-run {args}  (job {hydra_cfg.job.num} of the sweep in {hydra_cfg.sweep.dir})"
    return " ".join(["sac-run", *(shlex.quote(a) for a in sys.argv[1:])])


def resume_command(hydra_cfg: Any, multirun: bool, run_dir: str | Path) -> str:
    """The command that continues this run (its sweep, in a multirun) from its checkpoints."""
    keep = lambda args, key: [a for a in args if not a.lstrip("+~").startswith(f"{key}=")]  # noqa: E731
    if multirun:  # the sweep's own overrides, as multirun.yaml keeps them, into the same sweep dir
        saved = Path(hydra_cfg.sweep.dir) / "multirun.yaml"
        task, launch = list(hydra_cfg.overrides.task), list(hydra_cfg.overrides.hydra)
        if saved.is_file():
            recorded = OmegaConf.load(saved)
            task = [str(a) for a in OmegaConf.select(recorded, "hydra.overrides.task", default=task)]
            launch = [str(a) for a in OmegaConf.select(recorded, "hydra.overrides.hydra", default=launch)]
        launch = keep(keep(launch, "hydra.mode"), "hydra.sweep.dir")  # the launcher and its settings stay
        args = keep(task, "hydra.sweep.dir") + launch + [f"hydra.sweep.dir={hydra_cfg.sweep.dir}"]
        return "sac-run -m " + " ".join(shlex.quote(a) for a in args)
    args = [a for a in sys.argv[1:] if a not in ("-m", "--multirun")]
    if not any(a.startswith("resume=") for a in args):
        args = keep(args, "hydra.run.dir") + [f"hydra.run.dir={run_dir}"]
    return "sac-run " + " ".join(shlex.quote(a) for a in args)


def to_console(message: str) -> None:
    """An INFO line on the console only (the run's log file has it in its header)."""
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, message, None, None)
    for h in logging.getLogger().handlers:
        if not isinstance(h, logging.FileHandler):
            h.handle(record)


def write_header(cfg: Any, command: str) -> None:
    """The header goes to the run's log file only (the console shows progress)."""
    for line in header_lines(cfg, command):
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, line, None, None)
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.FileHandler):
                h.handle(record)
