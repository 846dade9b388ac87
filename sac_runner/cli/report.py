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
  with fewer than 5 seeds are flagged. The table is also printed to stdout. Skipped dirs, runs and rows are
  reported on stderr, one line each.

Grouping: runs are the same configuration when their experiment keys (every
config key but the run settings of ``sac_runner.config.identity.RUN_SETTINGS``, and
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

import sys
from pathlib import Path
from typing import Sequence

from sac_runner.analysis.outputs import FORMATS, FigureStyle, plot_curves, summary_csv, summary_markdown
from sac_runner.analysis.runs import (
    DEFAULT_METRIC,
    ReportError,
    SkipRun,
    find_runs,
    group_runs,
    load_run,
)
from sac_runner.analysis.stats import DEFAULT_BOOTSTRAP, DEFAULT_SEED, summarize
from sac_runner.cli.common import ArgumentParser, UsageError, run_tool

_PROG = "sac-report"


def _stderr(msg: str) -> None:
    print(f"{_PROG}: {msg}", file=sys.stderr)


# ---------------------------------------------------------------- CLI


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
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
    g = p.add_argument_group("the figure")
    g.add_argument("--label", action="append", default=[], metavar="AUTO=TEXT",
                   help="legend text for a configuration, e.g. --label 'target_entropy_scale=0.5=SAC, half target' "
                        "(AUTO: the label the figure shows, or the table's; repeatable: labelled configurations "
                        "come first in the legend, in this order, and keep their colours as others are added)")
    g.add_argument("--smooth", type=int, default=1, metavar="N", help="moving average over N evaluations (default 1)")
    g.add_argument("--xmin", type=float, help="x-axis start (env steps)")
    g.add_argument("--xmax", type=float, help="x-axis end (env steps)")
    g.add_argument("--size", metavar="W,H", help="figure size in inches, e.g. 6,4")
    g.add_argument("--format", choices=FORMATS, default="png", help="png (default), or vector: pdf, svg")
    return p


def figure_style(args) -> FigureStyle:
    labels = {}
    for item in args.label:
        auto, sep, text = item.rpartition("=")
        if not sep or not auto or not text:
            raise UsageError(f"--label {item!r} is not allowed: expected AUTO=TEXT")
        labels[auto] = text
    if args.smooth < 1:
        raise UsageError(f"--smooth={args.smooth} is not allowed: expected an integer >= 1")
    size = None
    if args.size:
        try:
            w, h = (float(x) for x in args.size.split(","))
        except ValueError:
            raise UsageError(f"--size={args.size!r} is not allowed: expected W,H in inches, e.g. 6,4") from None
        if w <= 0 or h <= 0:
            raise UsageError(f"--size={args.size!r} is not allowed: expected positive sizes")
        size = (w, h)
    return FigureStyle(labels=labels, smooth=args.smooth, xlim=(args.xmin, args.xmax), size=size, format=args.format)


def default_out_dir(paths: Sequence[str]) -> Path:
    if len(paths) == 1:
        p = Path(paths[0])
        if p.is_file():
            p = p.parent
        return p / "report"
    return Path("report")


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.bootstrap < 1:
        raise UsageError(f"--bootstrap={args.bootstrap} is not allowed: expected an integer >= 1")
    style = figure_style(args)
    notes: list[str] = []  # skipped dirs and rows: printed once there is a report to go with them
    run_dirs = find_runs(args.paths, warn=notes.append)
    runs = []
    for d in run_dirs:
        try:
            runs.append(load_run(d, args.metric, warn=notes.append))
        except SkipRun as exc:
            notes.append(f"skipped {d}: {exc}")
    if not runs:
        first = f" (first: {notes[0]})" if notes else ""
        raise ReportError(f"all {len(run_dirs)} run(s) were skipped; nothing to report{first}")
    for note in notes:
        _stderr(note)

    groups = group_runs(runs)
    summaries = summarize(groups, args.bootstrap, args.seed)
    md = summary_markdown(summaries, args.metric)
    out = Path(args.out) if args.out else default_out_dir(args.paths)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(md, encoding="utf-8")
    (out / "summary.csv").write_text(summary_csv(summaries), encoding="utf-8")
    figure = plot_curves(groups, out / "learning_curves.png", args.metric, args.bootstrap, args.seed, style)

    sys.stdout.write(md)
    _stderr(f"{len(runs)} run(s) in {len(groups)} configuration(s); wrote "
            f"{figure}, {out / 'summary.md'}, {out / 'summary.csv'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(_PROG, lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())

