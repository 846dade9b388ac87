"""What sac-report writes: learning curves, and the summary as Markdown and CSV."""
from __future__ import annotations

import csv
import io
import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sac_runner.analysis.runs import DEFAULT_METRIC, Group, format_value
from sac_runner.analysis.stats import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_SEED,
    FEW_SEEDS,
    Summary,
    aggregate_curve,
    probability_of_improvement,
)

BAND_LABEL = "mean, 95% bootstrap CI"
SEED_LINES_LABEL = f"single seeds (n < {FEW_SEEDS})"


# ---------------------------------------------------------------- outputs


def y_label(groups: Sequence[Group], metric: str = DEFAULT_METRIC) -> str:
    if metric != DEFAULT_METRIC:
        return metric
    episodes = sorted({format_value(r.config.get("eval_episodes", "?")) for g in groups for r in g.runs})
    unit = "episode" if episodes == ["1"] else "episodes"
    return f"eval return (deterministic, {'/'.join(episodes)} {unit})"


@dataclass
class FigureStyle:
    """What a user may set about a figure: legend labels (auto label -> text; labelled configurations come first,
    in this order, so each keeps its colour as others are added), smoothing (a moving average over this many
    evaluations), the x range, the size in inches, the file format (png, pdf, svg)."""
    labels: dict[str, str] = field(default_factory=dict)
    smooth: int = 1
    xlim: tuple[float | None, float | None] = (None, None)
    size: tuple[float, float] | None = None
    format: str = "png"

    def label_key(self, group: Group) -> str | None:
        """The key of `labels` that names this group (its full auto label or its short one), or None."""
        return next((k for k in (group.label, group.short_label) if k in self.labels), None)

    def ordered(self, groups: Sequence[Group]) -> list[Group]:
        """Labelled groups first, in the order of `labels`; the rest after, in their given order."""
        rank = {k: i for i, k in enumerate(self.labels)}
        return sorted(groups, key=lambda g: rank.get(self.label_key(g), len(rank)))


FORMATS = ("png", "pdf", "svg")
LINE_STYLES = ("-", (0, (5, 1.5)), (0, (1, 1)), (0, (4, 1, 1, 1)))  # after 10 colours, the next style


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """A trailing moving average over `window` points (the first points average what there is)."""
    if window <= 1 or values.size == 0:
        return values
    out = np.full(values.shape, np.nan)
    for i in range(values.size):
        chunk = values[max(0, i - window + 1):i + 1]
        chunk = chunk[np.isfinite(chunk)]
        out[i] = chunk.mean() if chunk.size else np.nan
    return out


def seeds_text(n: int) -> str:
    return f"{n} seed{'s' * (n != 1)}" + (f", fewer than {FEW_SEEDS}" if n < FEW_SEEDS else "")


def draw_curves(groups: Sequence[Group], metric: str = DEFAULT_METRIC,
                n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED, style: FigureStyle | None = None):
    """One subplot per env: per configuration the mean line, its bootstrap band, and its seeds as
    thin lines (gid "seed") when there are fewer than FEW_SEEDS. Returns the matplotlib Figure."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    style = style or FigureStyle()
    envs = sorted({g.env_id for g in groups})
    fig, axes = env_axes(len(envs), size=style.size)
    for ax, env in zip(axes, envs):
        env_groups = style.ordered([gr for gr in groups if gr.env_id == env])
        handles = []
        for i, g in enumerate(env_groups):
            steps, mean, low, high, n = aggregate_curve(g.runs, n_boot, seed)
            mean, low, high = (smoothed(x, style.smooth) for x in (mean, low, high))
            color, dashes = f"C{i % 10}", LINE_STYLES[(i // 10) % len(LINE_STYLES)]
            if 1 < len(g.runs) < FEW_SEEDS:  # one run's line is its mean line
                for r in g.runs:
                    ax.plot(r.steps, smoothed(r.values, style.smooth), color=color, linewidth=0.6, alpha=0.5,
                            gid="seed")
            full = np.where(n == len(g.runs), mean, np.nan)
            ax.plot(steps, mean, color=color, linestyle="--", linewidth=1.0)
            label = style.labels.get(style.label_key(g), g.short_label or g.label)
            line, = ax.plot(steps, full, color=color, linestyle=dashes, marker="o" if steps.size == 1 else None,
                            label=f"{label} ({seeds_text(len(g.runs))})", gid="mean")
            if len(g.runs) > 1:  # one run has no spread to show
                ax.fill_between(steps, low, high, color=color, alpha=0.12, linewidth=0, gid="band")
                for edge in (low, high):
                    ax.plot(steps, edge, color=color, linewidth=0.4, alpha=0.6)
            handles.append(line)
        labels = [h.get_label() for h in handles]
        if any(len(g.runs) > 1 for g in env_groups):
            handles.append((Patch(color="0.5", alpha=0.3, linewidth=0), Line2D([], [], color="0.3")))
            labels.append(BAND_LABEL)
        if any(1 < len(g.runs) < FEW_SEEDS for g in env_groups):
            handles.append(Line2D([], [], color="0.3", linewidth=0.6, alpha=0.5))
            labels.append(SEED_LINES_LABEL)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel(y_label(env_groups, metric) + (f", moving average of {style.smooth}" if style.smooth > 1
                                                      else ""))
        ax.set_xlim(*style.xlim)
        ax.grid(True, alpha=0.3)
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1,
                  frameon=False)  # below the axes: it never hides a curve
    fig.tight_layout()
    return fig


def plot_curves(groups: Sequence[Group], out_path: str | os.PathLike,
                metric: str = DEFAULT_METRIC, n_boot: int = DEFAULT_BOOTSTRAP,
                seed: int = DEFAULT_SEED, style: FigureStyle | None = None) -> Path:
    """The curves written to out_path (its suffix set to the style's format)."""
    style = style or FigureStyle()
    out_path = Path(out_path).with_suffix(f".{style.format}")
    draw_curves(groups, metric, n_boot, seed, style).savefig(out_path, format=style.format, dpi=150,
                                                              bbox_inches="tight")
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


def _with_ci(value: float, low: float, high: float, n: int = 2) -> str:
    """value [CI]; one run has no CI to show."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if n < 2 else f"{value:.2f} [{low:.2f}, {high:.2f}]"


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
            _with_ci(s.final.mean, s.final.ci_low, s.final.ci_high, s.final.n),
            _with_ci(s.final.iqm, s.final.iqm_low, s.final.iqm_high, s.final.n),
            _with_ci(s.best.mean, s.best.ci_low, s.best.ci_high, s.best.n) + best_n,
            _with_ci(s.best.iqm, s.best.iqm_low, s.best.iqm_high, s.best.n) + best_n, steps,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(s.few_seeds for s in summaries):
        lines += ["", f"{FEW_MARK} fewer than {FEW_SEEDS} seeds: the CIs say little (with 2 seeds a bootstrap "
                      "CI is [min, max]); learning_curves.png draws each of these seeds as a thin line."]
    if any(s.best.n < s.n_seeds for s in summaries):
        lines += ["", "best (n=k): only k seeds have an eval after learning_starts yet."]
    lines += improvement_table(summaries)
    return "\n".join(lines) + "\n"


def env_axes(n: int, max_cols: int = 3, size: tuple[float, float] | None = None):
    """A figure with one subplot per env (at most `max_cols` a row), unused axes hidden: (figure, axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(max_cols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=size or (5.5 * ncols, 4.0 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _honest_ylim(ax, values: list[float], least: float = 0.1) -> None:
    """A y-range at least `least` of the values' magnitude: a difference of 0.3 on returns near 1000 stays flat
    instead of filling the plot as a peak."""
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return
    low, high = min(values), max(values)
    need = least * max(abs(low), abs(high), 1e-9)
    if high - low < need:
        middle = (high + low) / 2
        ax.set_ylim(middle - need / 2, middle + need / 2)


def plot_robustness(groups: list[dict], xlabel: str, path: Path) -> Path:
    """sac-eval's sweep of one perturbation: per env and configuration the mean over runs at each level with its
    bootstrap band (groups as sac-eval's eval.json holds them)."""

    envs = sorted({g["env_id"] for g in groups})
    fig, axes = env_axes(len(envs), max_cols=len(envs))
    for ax, env_id in zip(axes, envs):
        spans = []
        for g in (g for g in groups if g["env_id"] == env_id):
            x = [r["level"] for r in g["levels"]]
            y = np.array([r["mean"] for r in g["levels"]])
            n = max(r["n_runs"] for r in g["levels"])
            if n > 1:
                low, high, what = [r["ci_low"] for r in g["levels"]], [r["ci_high"] for r in g["levels"]], "95% CI"
            else:  # one run: its spread over episodes
                std = np.array([r.get("episode_std", 0.0) for r in g["levels"]])
                low, high, what = y - std, y + std, "±1 std over episodes"
            ax.plot(x, y, marker="o", label=textwrap.fill(f"{g['label']} (n={n}; band: {what})", 70))
            ax.fill_between(x, low, high, alpha=0.2)
            ax.set_xticks(x)
            spans += [*low, *high, *y]
        _honest_ylim(ax, spans)
        ax.set_title(env_id)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eval return (mean over runs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below: labels can be long
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return Path(path)


def plot_trajectories(panels: list[dict], path: Path, goals: np.ndarray | None = None) -> Path:
    """sac-policy trajectories: one panel per run, its episodes' 2-D paths (`paths`: arrays [T, 2]) and, at a
    few states, the directions of sampled actions (`samples`: {state (x, y): actions [N, 2]}); goals as circles."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(panels), 4.2))
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for trajectory in panel["paths"]:
            ax.plot(trajectory[:, 0], trajectory[:, 1], color="tab:blue", alpha=0.6, lw=1)
        for (x, y), actions in panel.get("samples", {}).items():
            ax.quiver(np.full(len(actions), x), np.full(len(actions), y), actions[:, 0], actions[:, 1],
                      angles="xy", scale_units="xy", scale=1, color="tab:red", alpha=0.3, width=0.004)
        if goals is not None:
            for g in goals:
                ax.add_patch(_circle(g))
        ax.set_aspect("equal")
        ax.set_title(textwrap.fill(panel["title"], 45), fontsize=9)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return Path(path)


def _circle(center):
    from matplotlib.patches import Circle

    return Circle(tuple(center), 1.0, color="tab:green", alpha=0.3)


def plot_action_densities(grid: np.ndarray, optimal: np.ndarray, runs: list[dict], path: Path) -> Path:
    """sac-policy oracle on a 1-D bandit: pi*'s density on `grid` and a histogram of each run's samples
    (`runs`: {"label", "actions" [N]})."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(grid, optimal, color="black", lw=2, label="π* ∝ exp(r(a)/α)")
    for run in runs:
        ax.hist(run["actions"], bins=100, range=(-1, 1), density=True, histtype="step", lw=1.5,
                label=textwrap.fill(run["label"], 50))
    ax.set_xlabel("action a")
    ax.set_ylabel("density")
    ax.set_xlim(-1, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return Path(path)
