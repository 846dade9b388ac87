"""Run discovery and loading: run dirs under paths, their configs and metric curves, grouped into
configurations (runs differing only in run settings and seed)."""
from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import yaml
from omegaconf import OmegaConf

from sac_runner.config.identity import canonical as _canon
from sac_runner.config.identity import experiment_config as _experiment_keys
from sac_runner.config.identity import flatten, short_items
from sac_runner.errors import ConfigError
from sac_runner.runs.rundir import RunDir

METRICS_FILE = RunDir.METRICS
CONFIG_FILE = RunDir.CONFIG
HYDRA_CONFIG_FILE = os.path.join(RunDir.HYDRA, RunDir.CONFIG)
DEFAULT_METRIC = "eval/return_mean"
_UNSET = "<unset>"

Warn = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"sac-report: {msg}", file=sys.stderr)


class ReportError(ConfigError):
    """Bad input: a path without runs; the CLI prints it as one line (exit code 2)."""


class SkipRun(Exception):
    """A run dir that cannot be used (yet); the message says why."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flattened, dotted keys
    steps: np.ndarray  # int64, increasing
    values: np.ndarray  # float64, metric at each step

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def env_id(self) -> str:
        return env_id_of(self.config)

    @property
    def learning_starts(self) -> int:
        v = self.config.get("learning_starts", self.config.get("env.learning_starts"))
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    def best(self) -> float | None:
        """Highest eval after learning starts (None if there is none yet)."""
        after = self.values[self.steps > self.learning_starts]
        return float(after.max()) if after.size else None


@dataclass
class Group:
    env_id: str
    config: dict[str, Any]  # experiment keys of the first run, seed aside
    runs: list[Run] = field(default_factory=list)
    label: str = ""  # the keys that vary between configurations of the env, in full (tables, CSV)
    short_label: str = ""  # the same with short key names (figure legends)


# ---------------------------------------------------------------- finding runs


def _is_run_dir(d: Path) -> bool:
    return (d / METRICS_FILE).is_file()


def _looks_like_run(d: Path) -> bool:
    return (d / CONFIG_FILE).is_file() or (d / HYDRA_CONFIG_FILE).is_file()


def _natural_key(name: str) -> list:
    # "2" before "10" (Hydra multirun job dirs)
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def _walk(d: Path, found: list[Path], seen: set[str], warn: Warn) -> bool:
    """Collect run dirs under d; returns whether any was found."""
    real = os.path.realpath(d)
    if real in seen:
        return False
    seen.add(real)
    if _is_run_dir(d):
        found.append(d)
        return True
    try:
        with os.scandir(d) as it:
            subdirs = sorted(
                (e.name for e in it
                 if e.is_dir() and not e.name.startswith(".") and e.name != "wandb"),
                key=_natural_key,
            )
    except OSError as exc:
        warn(f"skipped {d}: cannot list directory ({exc.strerror or exc})")
        return False
    any_found = False
    for name in subdirs:
        any_found |= _walk(d / name, found, seen, warn)
    if not any_found and _looks_like_run(d):
        warn(f"skipped {d}: no {METRICS_FILE} yet")
    return any_found


def find_runs(paths: Iterable[str | os.PathLike], warn: Warn = _stderr) -> list[Path]:
    """Run dirs (dirs holding metrics.jsonl) at or under each path.

    Raises ReportError for a missing path, an empty dir or a path with no runs.
    """
    found: list[Path] = []
    known: set[str] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ReportError(f"{p}: no such file or directory")
        if p.is_file():
            if p.name != METRICS_FILE:
                raise ReportError(f"{p}: not a directory (expected a run or sweep dir)")
            p = p.parent
        try:
            empty = not any(p.iterdir())
        except OSError as exc:
            raise ReportError(f"{p}: cannot read directory ({exc.strerror or exc})") from None
        if empty:
            raise ReportError(f"{p}: directory is empty")
        here: list[Path] = []
        _walk(p, here, set(), warn)
        if not here:
            raise ReportError(f"{p}: no runs found (no {METRICS_FILE} under it)")
        for d in here:  # drop runs already found via another path
            real = os.path.realpath(d)
            if real not in known:
                known.add(real)
                found.append(d)
    return found


# ---------------------------------------------------------------- loading runs


# PyYAML (YAML 1.1) reads "3e-4" as a string; accept it as a float like OmegaConf.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_hydra_config(path: Path) -> dict[str, Any]:
    """Hydra's copy: resolve interpolations where possible, else keep raw strings."""

    cfg = OmegaConf.load(path)
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        raw = flatten(OmegaConf.to_container(cfg, resolve=False))
        data = {}
        for key, value in raw.items():
            try:
                value = OmegaConf.select(cfg, key)
                if OmegaConf.is_config(value):
                    value = OmegaConf.to_container(value, resolve=True)
            except Exception:
                pass
            if isinstance(value, dict) and value:
                data.update(flatten(value, key + "."))
            else:
                data[key] = value
        return data  # already flat
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    return flatten(data)


def load_config(run_dir: Path) -> dict[str, Any]:
    """Flattened config of a run; raises SkipRun if missing or unreadable."""
    path = run_dir / CONFIG_FILE
    if path.is_file():
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.load(f, Loader=_Loader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise SkipRun(f"unreadable config {path} ({_first_line(exc)})") from None
        if not isinstance(data, dict):
            raise SkipRun(f"unreadable config {path} (not a YAML mapping)")
        return flatten(data)
    path = run_dir / HYDRA_CONFIG_FILE
    if path.is_file():
        try:
            return _load_hydra_config(path)
        except Exception as exc:
            raise SkipRun(f"unreadable config {path} ({_first_line(exc)})") from None
    raise SkipRun(f"no {CONFIG_FILE} or {HYDRA_CONFIG_FILE}")


def _as_step(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def load_metric(path: Path, metric: str = DEFAULT_METRIC,
                warn: Warn = _stderr) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the rows holding `metric`; bad rows are skipped with a warning."""
    by_step: dict[int, float] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                what = "truncated" if not line.endswith("\n") else "corrupt"
                warn(f"skipped row {path}:{lineno}: {what} JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                warn(f"skipped row {path}:{lineno}: not a JSON object")
                continue
            step = _as_step(row.get("global_step"))
            if step is None:
                warn(f"skipped row {path}:{lineno}: missing or invalid global_step")
                continue
            if metric not in row:
                continue
            value = row[metric]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                warn(f"skipped row {path}:{lineno}: {metric} is {value!r}, not a finite number")
                continue
            by_step[step] = float(value)
    steps = np.array(sorted(by_step), dtype=np.int64)
    values = np.array([by_step[s] for s in steps.tolist()], dtype=np.float64)
    return steps, values


def load_run(run_dir: str | os.PathLike, metric: str = DEFAULT_METRIC,
             warn: Warn = _stderr) -> Run:
    """Load one run; raises SkipRun (with the reason) if it cannot be used."""
    run_dir = Path(run_dir)
    mpath = run_dir / METRICS_FILE
    if not mpath.is_file():
        raise SkipRun(f"no {METRICS_FILE} yet")
    config = load_config(run_dir)
    try:
        steps, values = load_metric(mpath, metric, warn)
    except OSError as exc:
        raise SkipRun(f"cannot read {mpath} ({exc.strerror or exc})") from None
    if steps.size == 0:
        raise SkipRun(f"no eval rows yet (no '{metric}' in {mpath})")
    return Run(path=run_dir, config=config, steps=steps, values=values)


# ---------------------------------------------------------------- grouping


def env_id_of(config: dict[str, Any]) -> str:
    env = config.get("env.id", config.get("env"))
    return str(env) if env is not None and not isinstance(env, dict) else "unknown-env"


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return str(v)


def experiment_config(config: dict[str, Any]) -> dict[str, Any]:
    """The keys that tell configurations apart: experiment keys without the seed."""
    return _experiment_keys(config, seed=False)


def _without_implied(varying: list[str], groups: list[Group]) -> list[str]:
    """When algorithm.name varies, keys that follow from it (each name has one value of them across the groups:
    alpha and learn_alpha of sac against sac_fixed_alpha, the lr and Adam beta1 CrossQ's YAML sets) add nothing to
    a label."""
    if "algorithm.name" not in varying:
        return varying
    implied = []
    for k in varying:
        if k != "algorithm.name":
            by_name: dict[Any, set] = {}
            for g in groups:
                by_name.setdefault(_canon(g.config.get("algorithm.name")), set()).add(_canon(g.config.get(k, _UNSET)))
            if all(len(values) == 1 for values in by_name.values()):
                implied.append(k)
    return [k for k in varying if k not in implied]


def with_added_keys(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Experiment configs of runs written before a key was added lack it. Such a run counts at the value the key
    takes in today's composed defaults for its env and algorithm, the rule resume applies to an old checkpoint
    (runs.resume.experiment_differences_baseline); a run of an older version then groups with today's runs of
    the same experiment."""
    keys = set().union(*configs) if configs else set()
    if all(len(c) == len(keys) for c in configs):
        return configs
    from sac_runner.config.naming import default_config  # composes conf/: only for runs of mixed versions

    filled = []
    for c in configs:
        missing = keys - c.keys()
        defaults = default_config(str(c.get("env.id")), str(c.get("algorithm.name"))) if missing else {}
        filled.append({**{k: defaults[k] for k in missing if k in defaults}, **c})
    return filled


def group_runs(runs: Sequence[Run], warn: Warn = _stderr) -> list[Group]:
    """Group runs that differ only in run settings and seed; groups sorted by env, label."""
    groups: dict[Any, Group] = {}
    for run, cfg in zip(runs, with_added_keys([experiment_config(r.config) for r in runs])):
        key = tuple(sorted((k, _canon(v)) for k, v in cfg.items()))
        if key not in groups:
            groups[key] = Group(env_id=run.env_id, config=cfg)
        groups[key].runs.append(run)

    by_env: dict[str, list[Group]] = {}
    for g in groups.values():
        by_env.setdefault(g.env_id, []).append(g)
    for env_groups in by_env.values():
        keys = sorted(set().union(*(g.config for g in env_groups)))
        varying = [
            k for k in keys
            if len({_canon(g.config.get(k, _UNSET)) for g in env_groups}) > 1
        ]
        varying = _without_implied(varying, env_groups)
        for g in env_groups:
            if varying:
                g.label = ", ".join(
                    f"{k}={format_value(g.config.get(k, _UNSET))}" for k in varying
                )
                name = [format_value(g.config.get("algorithm.name"))] if "algorithm.name" in varying else []
                rest = {k: g.config.get(k, _UNSET) for k in varying if k != "algorithm.name"}
                g.short_label = " ".join(name + short_items(rest))  # the algorithm by its name alone
            else:
                g.label = g.short_label = format_value(g.config.get("algorithm.name", "default"))
    for g in groups.values():
        g.runs.sort(key=lambda r: (str(r.seed), str(r.path)))
        seeds = [_canon(r.seed) for r in g.runs if r.seed is not None]
        dupes = sorted({format_value(r.seed) for r in g.runs
                        if r.seed is not None and seeds.count(_canon(r.seed)) > 1})
        if dupes:
            warn(f"note: {g.env_id} [{g.label}]: seed(s) {', '.join(dupes)} appear in "
                 "more than one run; each run counts as a sample")
    return sorted(groups.values(), key=lambda g: (g.env_id, g.label))


