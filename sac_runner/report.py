"""``sac-report``: summarize SAC runs from their local metrics files.

Usage::

    sac-report PATH [PATH ...] [--out DIR] [--metric eval/return_mean]
               [--bootstrap N] [--seed S]

Each PATH is a run dir (contains ``metrics.jsonl``) or a sweep dir, searched
recursively for run dirs (hidden dirs and ``wandb`` dirs are not searched; a
run dir's own subdirs are not searched). Outputs go to ``--out``, by default
``<PATH>/report`` for a single PATH and ``./report`` otherwise:

* ``learning_curves.png``: one subplot per ``env.id``; per configuration the
  mean over seeds and a 95% percentile-bootstrap band over seeds (and each
  seed as a thin line when there are fewer than 5).
* ``summary.md`` / ``summary.csv``: one row per configuration with the final
  (last eval) and best (max eval after ``learning_starts``) metric per run,
  aggregated over seeds as mean and IQM, each with a 95% bootstrap CI; rows
  with fewer than 5 seeds are flagged. The table is also printed to stdout. Skipped dirs, runs and rows are reported on stderr, one
  line each.

Grouping: runs are the same configuration when their experiment keys (every
config key but the run settings of ``sac_runner.experiment.RUN_SETTINGS``, and
the seed) are equal. Numbers compare by value (``1`` == ``1.0``). Labels list
the keys that vary between configurations of the same env, or
``algorithm.name`` when nothing varies.

Partial curves (runs still in progress, or seeds with different eval steps):
curves are evaluated on the union of all seeds' eval steps. A seed contributes
at step ``s`` only if ``s`` lies within its own first..last eval step (linear
interpolation between its own eval points, which is exact when steps align;
never extrapolated). So the tail of a curve is averaged over the seeds that
reached it (drawn dashed where not all seeds contribute), and the band
narrows to the line where only one seed remains. In
the table, "final" is each run's last eval, whatever step it reached; "best"
is its highest eval after ``learning_starts`` (evaluations of the random
warm-up policy do not count); the ``last_step_min``/``last_step_max`` columns
show how far the seeds got.

Statistics over seeds: mean and IQM (interquartile mean as in rliable: the 25%
trimmed mean, ``scipy.stats.trim_mean(x, 0.25)``), each with a 95% percentile
bootstrap CI: resample seeds with replacement ``--bootstrap`` times (default
2000) with ``numpy.random.default_rng(--seed)``, take the 2.5/97.5 percentiles
of the statistic; with one seed the CI is the value itself. With fewer than
``FEW_SEEDS`` (5) seeds a bootstrap CI says little (with 2 seeds it is
[min, max]): such rows are flagged and their seeds are drawn as thin lines.
For two or more configurations of one env, ``summary.md`` adds the probability
of improvement P(X > Y): the chance that a random seed of one configuration
ends (final return) above a random seed of another, ties counting half, i.e.
the Mann-Whitney U statistic divided by n_x * n_y (rliable's definition).

Rows within a metrics file are ordered by ``global_step``; if a step appears
twice (e.g. after a resume) the later row wins.

Exit codes: 0 ok, 2 bad input (missing path, empty dir, no runs, all runs
skipped, bad option), 1 failure writing the outputs.
"""

from __future__ import annotations

import argparse
import csv
import io
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

from .experiment import canonical as _canon
from .experiment import experiment_config as _experiment_keys
from .experiment import flatten

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
HYDRA_CONFIG_FILE = os.path.join(".hydra", "config.yaml")
DEFAULT_METRIC = "eval/return_mean"
DEFAULT_BOOTSTRAP = 2000
DEFAULT_SEED = 0

# Rows with fewer seeds are flagged: their bootstrap CIs say little.
FEW_SEEDS = 5
CI_LEVEL = 0.95
BAND_LABEL = "mean, 95% bootstrap CI"
SEED_LINES_LABEL = f"single seeds (n < {FEW_SEEDS})"

_PROG = "sac-report"
_UNSET = "<unset>"

Warn = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"{_PROG}: {msg}", file=sys.stderr)


class ReportError(Exception):
    """Bad input; main() prints it and exits with code 2."""


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
    label: str = ""


@dataclass
class Stats:
    mean: float
    ci_low: float
    ci_high: float
    iqm: float
    iqm_low: float
    iqm_high: float
    n: int


@dataclass
class Summary:
    env_id: str
    label: str
    n_seeds: int
    final: Stats
    best: Stats
    last_step_min: int
    last_step_max: int
    finals: list[float] = field(default_factory=list)

    @property
    def few_seeds(self) -> bool:
        return self.n_seeds < FEW_SEEDS


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
    from omegaconf import OmegaConf

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


def group_runs(runs: Sequence[Run], warn: Warn = _stderr) -> list[Group]:
    """Group runs that differ only in run settings and seed; groups sorted by env, label."""
    groups: dict[Any, Group] = {}
    for run in runs:
        cfg = experiment_config(run.config)
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
        for g in env_groups:
            if varying:
                g.label = ", ".join(
                    f"{k}={format_value(g.config.get(k, _UNSET))}" for k in varying
                )
            else:
                g.label = format_value(g.config.get("algorithm.name", "default"))
    for g in groups.values():
        g.runs.sort(key=lambda r: (str(r.seed), str(r.path)))
        seeds = [_canon(r.seed) for r in g.runs if r.seed is not None]
        dupes = sorted({format_value(r.seed) for r in g.runs
                        if r.seed is not None and seeds.count(_canon(r.seed)) > 1})
        if dupes:
            warn(f"note: {g.env_id} [{g.label}]: seed(s) {', '.join(dupes)} appear in "
                 "more than one run; each run counts as a sample")
    return sorted(groups.values(), key=lambda g: (g.env_id, g.label))


# ---------------------------------------------------------------- statistics


def _boot_means(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """x: (..., n) -> bootstrap means (..., n_boot), same resample indices for all rows."""
    return _boot(x, n_boot, seed, lambda r: r.mean(axis=-1))


def _boot(x: np.ndarray, n_boot: int, seed: int, stat) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = x.shape[-1]
    idx = rng.integers(0, n, size=(n_boot, n))
    return stat(x[..., idx])


def iqm(values: Sequence[float], axis: int = -1):
    """Interquartile mean: the 25% trimmed mean (rliable's IQM)."""
    from scipy.stats import trim_mean

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan
    out = trim_mean(x, 0.25, axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_ci(values: Sequence[float], n_boot: int = DEFAULT_BOOTSTRAP,
                 seed: int = DEFAULT_SEED, level: float = CI_LEVEL,
                 statistic: str = "mean") -> tuple[float, float]:
    """Percentile bootstrap CI over seeds of the mean (or "iqm"); one value -> (v, v)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    stat = (lambda r: r.mean(axis=-1)) if statistic == "mean" else (lambda r: iqm(r, axis=-1))
    boots = _boot(x, n_boot, seed, stat)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(boots, [tail, 100.0 - tail])
    return (float(lo), float(hi))


def describe(values: Sequence[float], n_boot: int = DEFAULT_BOOTSTRAP,
             seed: int = DEFAULT_SEED) -> Stats:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Stats(*([math.nan] * 6), n=0)
    lo, hi = bootstrap_ci(x, n_boot, seed)
    ilo, ihi = bootstrap_ci(x, n_boot, seed, statistic="iqm")
    return Stats(mean=float(x.mean()), ci_low=lo, ci_high=hi, iqm=iqm(x), iqm_low=ilo, iqm_high=ihi,
                 n=int(x.size))


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) + P(X = Y) / 2 for a random seed of each: Mann-Whitney U / (n_x * n_y)."""
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(mannwhitneyu(x, y).statistic) / (x.size * y.size)


def summarize(groups: Sequence[Group], n_boot: int = DEFAULT_BOOTSTRAP,
              seed: int = DEFAULT_SEED) -> list[Summary]:
    out = []
    for g in groups:
        finals = [float(r.values[-1]) for r in g.runs]
        bests = [b for b in (r.best() for r in g.runs) if b is not None]
        last = [int(r.steps[-1]) for r in g.runs]
        out.append(Summary(
            env_id=g.env_id, label=g.label, n_seeds=len(g.runs),
            final=describe(finals, n_boot, seed), best=describe(bests, n_boot, seed),
            last_step_min=min(last), last_step_max=max(last), finals=finals,
        ))
    return out


def aggregate_curve(runs: Sequence[Run], n_boot: int = DEFAULT_BOOTSTRAP,
                    seed: int = DEFAULT_SEED):
    """Mean and 95% bootstrap band over seeds on the union of eval steps.

    Returns (steps, mean, low, high, n) where n[i] is how many seeds cover steps[i].
    """
    steps = np.unique(np.concatenate([r.steps for r in runs]))
    grid = np.full((steps.size, len(runs)), np.nan)
    for j, r in enumerate(runs):
        inside = (steps >= r.steps[0]) & (steps <= r.steps[-1])
        grid[inside, j] = np.interp(steps[inside], r.steps, r.values)
    covered = ~np.isnan(grid)
    n = covered.sum(axis=1)
    mean = np.nanmean(grid, axis=1)
    low, high = mean.copy(), mean.copy()
    # rows with the same set of covering seeds share one bootstrap
    patterns: dict[bytes, list[int]] = {}
    for i in range(steps.size):
        if n[i] > 1:
            patterns.setdefault(covered[i].tobytes(), []).append(i)
    for rows in patterns.values():
        cols = covered[rows[0]]
        sub = grid[np.ix_(rows, cols)]
        chunk = max(1, 4_000_000 // (n_boot * sub.shape[1]))
        for s in range(0, len(rows), chunk):
            means = _boot_means(sub[s:s + chunk], n_boot, seed)
            lo, hi = np.percentile(means, [2.5, 97.5], axis=-1)
            low[rows[s:s + chunk]] = lo
            high[rows[s:s + chunk]] = hi
    return steps, mean, low, high, n


# ---------------------------------------------------------------- outputs


def y_label(groups: Sequence[Group], metric: str = DEFAULT_METRIC) -> str:
    if metric != DEFAULT_METRIC:
        return metric
    episodes = sorted({format_value(r.config.get("eval_episodes", "?")) for g in groups for r in g.runs})
    unit = "episode" if episodes == ["1"] else "episodes"
    return f"eval return (deterministic, {'/'.join(episodes)} {unit})"


def draw_curves(groups: Sequence[Group], metric: str = DEFAULT_METRIC,
                n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED):
    """One subplot per env: per configuration the mean line, its bootstrap band, and its seeds as
    thin lines (gid "seed") when there are fewer than FEW_SEEDS. Returns the matplotlib Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    envs = sorted({g.env_id for g in groups})
    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    fig = Figure(figsize=(5.5 * ncols, 4.0 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, env in zip(axes, envs):
        env_groups = [gr for gr in groups if gr.env_id == env]
        handles = []
        for i, g in enumerate(env_groups):
            steps, mean, low, high, n = aggregate_curve(g.runs, n_boot, seed)
            color = f"C{i % 10}"
            if len(g.runs) < FEW_SEEDS:
                for r in g.runs:
                    ax.plot(r.steps, r.values, color=color, linewidth=0.6, alpha=0.5, gid="seed")
            full = np.where(n == len(g.runs), mean, np.nan)
            ax.plot(steps, mean, color=color, linestyle="--", linewidth=1.0)
            few = "<5 " if len(g.runs) < FEW_SEEDS else ""
            line, = ax.plot(steps, full, color=color, marker="o" if steps.size == 1 else None,
                            label=f"{g.label} ({few}n={len(g.runs)})", gid="mean")
            ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0, gid="band")
            handles.append(line)
        handles.append((Patch(color="0.5", alpha=0.3, linewidth=0),
                        Line2D([], [], color="0.3")))
        labels = [h.get_label() for h in handles[:-1]] + [BAND_LABEL]
        if any(len(g.runs) < FEW_SEEDS for g in env_groups):
            handles.append(Line2D([], [], color="0.3", linewidth=0.6, alpha=0.5))
            labels.append(SEED_LINES_LABEL)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel(y_label(env_groups, metric))
        ax.grid(True, alpha=0.3)
        ax.legend(handles, labels, fontsize=7, loc="best")
    for ax in axes[len(envs):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_curves(groups: Sequence[Group], out_path: str | os.PathLike,
                metric: str = DEFAULT_METRIC, n_boot: int = DEFAULT_BOOTSTRAP,
                seed: int = DEFAULT_SEED) -> Path:
    out_path = Path(out_path)
    draw_curves(groups, metric, n_boot, seed).savefig(out_path, format="png", dpi=110)
    return out_path


CSV_COLUMNS = (
    "env", "label", "n_seeds", "few_seeds",
    "final_mean", "final_ci_low", "final_ci_high",
    "final_iqm", "final_iqm_ci_low", "final_iqm_ci_high",
    "best_n", "best_mean", "best_ci_low", "best_ci_high",
    "best_iqm", "best_iqm_ci_low", "best_iqm_ci_high",
    "last_step_min", "last_step_max",
)


def _csv_row(s: Summary) -> list[Any]:
    f, b = s.final, s.best
    return [s.env_id, s.label, s.n_seeds, s.few_seeds,
            f.mean, f.ci_low, f.ci_high, f.iqm, f.iqm_low, f.iqm_high,
            b.n, b.mean, b.ci_low, b.ci_high, b.iqm, b.iqm_low, b.iqm_high,
            s.last_step_min, s.last_step_max]


def summary_csv(summaries: Sequence[Summary]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s in summaries:
        w.writerow(_csv_row(s))
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _with_ci(value: float, low: float, high: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f} [{low:.2f}, {high:.2f}]"


FEW_MARK = "(few)"


def improvement_table(summaries: Sequence[Summary]) -> list[str]:
    """Markdown: per env with 2+ configurations, P(row's final return > column's) over seeds."""
    lines: list[str] = []
    for env in sorted({s.env_id for s in summaries}):
        rows = [s for s in summaries if s.env_id == env]
        if len(rows) < 2:
            continue
        lines += ["", f"Probability of improvement, {_md_cell(env)}: P(a seed of the row's configuration ends "
                      "above a seed of the column's), final return, ties count half (Mann-Whitney U / "
                      "(n_row * n_col); 0.5 = no difference).", "",
                  "| config | " + " | ".join(_md_cell(s.label) for s in rows) + " |",
                  "|---|" + "---:|" * len(rows)]
        for a in rows:
            cells = ["-" if a is b else f"{probability_of_improvement(a.finals, b.finals):.2f}" for b in rows]
            lines.append(f"| {_md_cell(a.label)} | " + " | ".join(cells) + " |")
    return lines


def summary_markdown(summaries: Sequence[Summary], metric: str = DEFAULT_METRIC) -> str:
    head = ["env", "config", "seeds", "final mean [95% CI]", "final IQM [95% CI]",
            "best mean [95% CI]", "best IQM [95% CI]", "last step"]
    lines = [f"Metric: `{metric}`. Final = last eval of each run, best = its highest eval after "
             "learning_starts; mean and IQM (25% trimmed mean) over seeds with 95% percentile-bootstrap CIs.",
             "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * 5) + "|"]
    for s in summaries:
        steps = (str(s.last_step_max) if s.last_step_min == s.last_step_max
                 else f"{s.last_step_min}-{s.last_step_max}")
        best_n = "" if s.best.n == s.n_seeds else f" (n={s.best.n})"
        cells = [
            _md_cell(s.env_id), _md_cell(s.label), f"{s.n_seeds} {FEW_MARK}" if s.few_seeds else str(s.n_seeds),
            _with_ci(s.final.mean, s.final.ci_low, s.final.ci_high),
            _with_ci(s.final.iqm, s.final.iqm_low, s.final.iqm_high),
            _with_ci(s.best.mean, s.best.ci_low, s.best.ci_high) + best_n,
            _with_ci(s.best.iqm, s.best.iqm_low, s.best.iqm_high) + best_n, steps,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(s.few_seeds for s in summaries):
        lines += ["", f"{FEW_MARK} fewer than {FEW_SEEDS} seeds: the CIs say little (with 2 seeds a bootstrap "
                      "CI is [min, max]); learning_curves.png draws each of these seeds as a thin line."]
    if any(s.best.n < s.n_seeds for s in summaries):
        lines += ["", "best (n=k): only k seeds have an eval after learning_starts yet."]
    lines += improvement_table(summaries)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Learning curves and seed-aggregated summary of SAC runs "
                    "(reads each run's metrics.jsonl and config.yaml).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="run dir(s) or sweep dir(s)")
    p.add_argument("--out", default=None,
                   help="output dir (default: PATH/report for one PATH, else ./report)")
    p.add_argument("--metric", default=DEFAULT_METRIC,
                   help=f"metric key in metrics.jsonl (default: {DEFAULT_METRIC})")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, metavar="N",
                   help=f"bootstrap resamples (default: {DEFAULT_BOOTSTRAP})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"bootstrap RNG seed (default: {DEFAULT_SEED})")
    return p


def default_out_dir(paths: Sequence[str]) -> Path:
    if len(paths) == 1:
        p = Path(paths[0])
        if p.is_file():
            p = p.parent
        return p / "report"
    return Path("report")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage/error
        return exc.code if isinstance(exc.code, int) else 2
    if args.bootstrap < 1:
        _stderr("error: --bootstrap must be >= 1")
        return 2

    try:
        run_dirs = find_runs(args.paths)
    except ReportError as exc:
        _stderr(f"error: {exc}")
        return 2

    runs = []
    for d in run_dirs:
        try:
            runs.append(load_run(d, args.metric))
        except SkipRun as exc:
            _stderr(f"skipped {d}: {exc}")
    if not runs:
        _stderr(f"error: all {len(run_dirs)} run(s) were skipped; nothing to report")
        return 2

    groups = group_runs(runs)
    summaries = summarize(groups, args.bootstrap, args.seed)
    md = summary_markdown(summaries, args.metric)
    out = Path(args.out) if args.out else default_out_dir(args.paths)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.md").write_text(md, encoding="utf-8")
        (out / "summary.csv").write_text(summary_csv(summaries), encoding="utf-8")
        plot_curves(groups, out / "learning_curves.png", args.metric, args.bootstrap, args.seed)
    except OSError as exc:
        _stderr(f"error: cannot write report to {out} ({exc.strerror or exc})")
        return 1

    sys.stdout.write(md)
    _stderr(f"{len(runs)} run(s) in {len(groups)} configuration(s); wrote "
            f"{out / 'learning_curves.png'}, {out / 'summary.md'}, {out / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
