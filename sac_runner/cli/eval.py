"""`sac-eval`: evaluate trained policies, optionally in perturbed envs, and compare runs across seeds."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

from sac_runner.cli.common import use_headless_rendering

use_headless_rendering()  # before anything imports MuJoCo's renderer

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sac_runner.analysis.listing import find_run_dirs  # noqa: E402
from sac_runner.analysis.outputs import plot_robustness  # noqa: E402
from sac_runner.analysis.runs import Run, group_runs  # noqa: E402
from sac_runner.analysis.stats import bootstrap_ci  # noqa: E402
from sac_runner.cli.common import ArgumentParser, UsageError, run_tool  # noqa: E402
from sac_runner.config.identity import flatten  # noqa: E402
from sac_runner.envs.episodes import eval_seeds, run_episodes  # noqa: E402
from sac_runner.envs.families import route_messages  # noqa: E402
from sac_runner.envs.perturb import Perturbation, PerturbedEnv, parse_levels  # noqa: E402
from sac_runner.errors import ConfigError  # noqa: E402
from sac_runner.policy import load_policy  # noqa: E402
from sac_runner.runs.rundir import RunDir  # noqa: E402
from sac_runner.runs.video import check_can_render, write_mp4  # noqa: E402
from sac_runner.update.devices import resolve_device  # noqa: E402

PROG = "sac-eval"
FLAGS = {"action_noise": "--action-noise", "obs_noise": "--obs-noise", "mass_scale": "--mass-scale",
         "friction_scale": "--friction-scale", "gear_scale": "--gear-scale"}

EXAMPLES = """examples:
  sac-eval outputs/2026-11-25/12-00-00                 reproduce the run's last evaluation (its eval seeds)
  sac-eval outputs/run --best --episodes 50            best_model.pt over 50 episodes
  sac-eval outputs/run/checkpoints/step_000050000.pt --stochastic --video
  sac-eval outputs/run --mass-scale 0.5,0.75,1,1.5,2   return against body-mass scale: table and PNG
  sac-eval multirun/<date>/<time>/*/ --action-noise 0,0.1,0.3 --out robustness/
                                                       runs grouped by config (seeds pooled, 95% bootstrap CI)

Writes eval.json and eval.md (and robustness.png for several levels, videos/*.mp4 with --video) into --out,
by default <run dir>/eval for one run and ./sac-eval for several."""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Evaluate trained policies: returns over fixed seeds, optionally with "
                "perturbed actions, observations or MuJoCo models.", epilog=EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="run dir (its model.pt), model.pt, best_model.pt or checkpoints/step_*.pt")
    p.add_argument("--best", action="store_true", help="use each run dir's best_model.pt")
    p.add_argument("--episodes", type=int, help="episodes per level (default: the run's eval_episodes)")
    p.add_argument("--seed", type=int, help="start seeds seed+10000+i (default: the run's seed, so its own eval "
                   "episodes)")
    p.add_argument("--stochastic", action="store_true", help="sample actions (default: the mean action)")
    p.add_argument("--video", action="store_true", help="write the first episode of each level as MP4")
    p.add_argument("--out", type=Path, help="output dir")
    p.add_argument("--device", default="cpu", help="torch device for the policy (default cpu)")
    p.add_argument("--threads", type=int, help="torch threads (default: the run's `threads` when set); the count "
                   "changes float rounding, so an exact reproduction needs the run's")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the CIs across seeds")
    g = p.add_argument_group("perturbations (one value, or several separated by commas to sweep one of them)")
    g.add_argument("--action-noise", default="0", metavar="STD", help="Gaussian noise on actions, action units")
    g.add_argument("--obs-noise", default="0", metavar="STD", help="Gaussian noise on observations")
    g.add_argument("--mass-scale", default="1", metavar="S", help="scale of all body masses (MuJoCo)")
    g.add_argument("--friction-scale", default="1", metavar="S", help="scale of all friction coefficients (MuJoCo)")
    g.add_argument("--gear-scale", default="1", metavar="S", help="scale of all actuator gears (MuJoCo)")
    return p


@dataclass
class LevelResult:
    perturbation: dict
    returns: list[float]
    lengths: list[int]
    mean: float
    std: float
    video: str | None = None


@dataclass
class RunResult:
    path: str
    model: str
    env_id: str
    seed: int
    label: str = ""
    levels: list[LevelResult] = field(default_factory=list)


def sweep(args) -> tuple[str | None, list]:
    """(the swept perturbation or None, the list of Perturbations to evaluate)."""
    values = {name: parse_levels(flag, getattr(args, name)) for name, flag in FLAGS.items()}
    swept = [name for name, levels in values.items() if len(levels) > 1]
    if len(swept) > 1:
        raise ConfigError(f"{' and '.join(FLAGS[n] for n in swept)} each give several levels; sweep one "
                          "perturbation at a time")
    base = Perturbation(**{name: levels[0] for name, levels in values.items()})
    if not swept:
        return None, [base]
    return swept[0], [replace(base, **{swept[0]: level}) for level in values[swept[0]]]


def evaluate_run(policy, perturbations, episodes: int | None, seed: int | None, stochastic: bool,
                 video_dir: Path | None, name: str, threads: int | None = None, progress=None) -> RunResult:
    threads = threads or int(policy.config.get("threads") or 0)
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        return _evaluate_run(policy, perturbations, episodes, seed, stochastic, video_dir, name, progress)
    finally:
        torch.set_num_threads(previous)


def _evaluate_run(policy, perturbations, episodes: int | None, seed: int | None, stochastic: bool,
                  video_dir: Path | None, name: str, progress=None) -> RunResult:
    cfg = policy.config
    n = episodes or int(cfg["eval_episodes"])
    seeds = eval_seeds(int(cfg["seed"]) if seed is None else seed, n)
    result = RunResult(path=name, model=str(policy.path), env_id=cfg["env"]["id"], seed=int(cfg["seed"]))
    render = int(cfg["logger"].get("video_size", 128)) if video_dir else None
    for p in perturbations:
        envs = [PerturbedEnv(policy.make_env(render_size=render if i == 0 else None), p, cfg["env"]["id"])
                for i in range(n)]
        try:
            if render:
                check_can_render(envs[0], cfg["env"]["id"], asked="--video", off="drop --video")
            if stochastic:
                policy.seed(seeds[0])
            out = run_episodes(lambda obs: policy.act(obs, deterministic=not stochastic), envs, seeds,
                               record=render is not None)
            fps = envs[0].metadata.get("render_fps", 30)
        finally:
            for env in envs:
                env.close()
        level = LevelResult(perturbation=p.changes(), returns=out.returns.tolist(), lengths=out.lengths.tolist(),
                            mean=out.mean, std=out.std)
        if out.frames:
            tag = "_".join(f"{k}={v:g}" for k, v in p.changes().items()) or "unperturbed"
            path = video_dir / f"{_slug(name)}_{tag}.mp4"
            write_mp4(path, out.frames, fps=fps)
            level.video = str(path)
        result.levels.append(level)
        if progress is not None:
            progress(level)
    return result


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text.strip("/"))
    return keep[-80:] or "run"


def group_results(results: list[RunResult], configs: list[dict], swept: str | None, levels: list[float],
                  n_boot: int, warn) -> list[dict]:
    """Runs whose configs differ only in the seed (and run settings) pooled: per level, the mean over runs of
    each run's mean return and a bootstrap CI across runs (report.py's grouping and bootstrap)."""
    runs = [Run(path=Path(r.path), config=flatten(c), steps=np.zeros(0, np.int64), values=np.zeros(0))
            for r, c in zip(results, configs)]
    by_path = {str(Path(r.path)): r for r in results}
    groups = []
    for g in group_runs(runs, warn=warn):
        members = [by_path[str(run.path)] for run in g.runs]
        for m in members:
            m.label = g.label
        rows = []
        for i, level in enumerate(levels):
            means = [m.levels[i].mean for m in members]
            lo, hi = bootstrap_ci(means, n_boot)
            row = {"level": level, "mean": float(np.mean(means)), "ci_low": lo, "ci_high": hi, "n_runs": len(means)}
            if len(members) == 1:  # no spread across runs: the one run's spread across its episodes instead
                row["episode_std"] = members[0].levels[i].std
            rows.append(row)
        groups.append({"env_id": g.env_id, "label": g.label, "runs": [m.path for m in members], "levels": rows})
    return groups


def markdown(results: list[RunResult], groups: list[dict], swept: str | None, stochastic: bool) -> str:
    mode = "stochastic" if stochastic else "deterministic"
    col = swept or "perturbation"
    lines = [f"# sac-eval ({mode} actions)", "", f"| run | {col} | return mean | std | episodes |",
             "|---|---|---|---|---|"]
    for r in results:
        for lv in r.levels:
            what = (f"{lv.perturbation.get(swept, _default(swept)):g}" if swept else
                    ", ".join(f"{k}={v:g}" for k, v in lv.perturbation.items()) or "none")
            lines.append(f"| {r.path} | {what} | {lv.mean:.2f} | {lv.std:.2f} | {len(lv.returns)} |")
    if groups and (len(results) > 1 or swept):
        lines += ["", "Across runs of one configuration (mean of each run's mean return, 95% bootstrap CI):", "",
                  f"| env | configuration | {col} | return mean | 95% CI | runs |", "|---|---|---|---|---|---|"]
        for g in groups:
            for row in g["levels"]:
                level = f"{row['level']:g}" if swept else "-"
                ci = f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["n_runs"] > 1 else "- (one run)"
                lines.append(f"| {g['env_id']} | {g['label']} | {level} | {row['mean']:.2f} | {ci} | "
                             f"{row['n_runs']} |")
    return "\n".join(lines) + "\n"


def _default(name: str) -> float:
    return getattr(Perturbation, name)


def default_out(paths: Sequence[str]) -> Path:
    """<run dir>/eval for one run (eval.2, eval.3, ... when an earlier evaluation is there: both are kept),
    ./sac-eval for several."""
    if len(paths) == 1:
        p = Path(paths[0])
        base = (RunDir.of_checkpoint(p).path if p.is_file() else p) / RunDir.EVAL
    else:
        base = Path("sac-eval")
    out, n = base, 1
    while (out / "eval.json").exists():
        n += 1
        out = base.with_name(f"{base.name}.{n}")
    return out


def expand_paths(paths: Sequence[str], best: bool) -> tuple[list[str], list[str]]:
    """(the runs to evaluate, notes on what was skipped): a model file or run dir stands for itself; a sweep dir
    (or any dir holding run dirs) for the runs under it; a dir without a model (a report/ folder in
    `sweep/*/`, say) is skipped with a note."""
    runs, notes = [], []
    for text in paths:
        p = Path(text)
        run = RunDir(p)
        if p.is_file() or run.model.is_file() or run.best_model.is_file() or run.checkpoint_steps():
            runs.append(text)
            continue
        found = [str(d) for d in find_run_dirs([p]) if (RunDir(d).best_model if best else RunDir(d).model).is_file()
                 or RunDir(d).checkpoint_steps()] if p.is_dir() else []
        if found:
            runs += found
        elif p.is_dir():
            notes.append(f"skipped {p}: no run under it (no model.pt or checkpoints)")
        else:
            runs.append(text)  # load_policy names what is wrong with it
    if not runs:
        raise UsageError(f"no runs to evaluate in {', '.join(paths)} (no model.pt or checkpoints under them)")
    return list(dict.fromkeys(runs)), notes


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--episodes", args.episodes), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise UsageError(f"{flag}={value} is not allowed: expected an integer >= 1")
    swept, perturbations = sweep(args)
    paths, notes = expand_paths([str(Path(p)) for p in args.paths], args.best)  # each run once
    out = args.out or default_out(paths)
    if args.out and (out / "eval.json").exists():
        notes.append(f"note: {out / 'eval.json'} and the files beside it are replaced (give another --out to keep "
                     "both)")
    for note in notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    resolve_device(args.device)
    route_messages(out)  # MuJoCo's warnings to <out>/MUJOCO_LOG.TXT, not the terminal
    policies = []
    for path in paths:
        policies.append((path, load_policy(path, best=args.best, device=args.device)))  # all checked first
    results, configs = [], []
    total, done = len(policies) * len(perturbations), 0
    for path, policy in policies:
        def progress(lv, path=path):  # one line as each level finishes: a long sweep is never silent
            nonlocal done
            done += 1
            what = ", ".join(f"{k}={v:g}" for k, v in lv.perturbation.items()) or "unperturbed"
            print(f"[{done}/{total}] {path} [{what}]: return {lv.mean:.2f} ± {lv.std:.2f} over {len(lv.returns)} "
                  "episodes", flush=True)

        result = evaluate_run(policy, perturbations, args.episodes, args.seed, args.stochastic,
                              out / "videos" if args.video else None, path, args.threads, progress)
        results.append(result)
        configs.append(policy.config)
    levels = [getattr(p, swept) for p in perturbations] if swept else [None]
    groups = group_results(results, configs, swept, levels, args.bootstrap,
                           warn=lambda m: print(f"{PROG}: {m}", file=sys.stderr))
    out.mkdir(parents=True, exist_ok=True)
    report = {"mode": "stochastic" if args.stochastic else "deterministic", "swept": swept,
              "runs": [asdict(r) for r in results], "groups": groups}
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    table = markdown(results, groups, swept, args.stochastic)
    (out / "eval.md").write_text(table)
    written = [out / "eval.json", out / "eval.md"]
    if swept:
        written.append(plot_robustness(groups, FLAGS[swept].lstrip("-"), out / "robustness.png"))
    if len(results) > 1 or swept:
        print(table)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(PROG, lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
