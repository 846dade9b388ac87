"""`sac-policy`: what a trained policy is, beyond its return.

  sac-policy oracle RUN...         on env=bandit: its soft value against V*, KL(pi || pi*), mass per mode
  sac-policy trajectories RUN...   on a 2-D point env (env=multigoal): paths from the start state, and the
                                   directions of sampled actions at a few states, as a figure
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from sac_runner.analysis.outputs import plot_action_densities, plot_trajectories
from sac_runner.cli.common import ArgumentParser, UsageError, run_tool
from sac_runner.policy import Policy, load_policy
from sac_runner.policy.soft_optimality import bandit_of, best_tanh_gaussian, soft_optimality

PROG = "sac-policy"
DEFAULT_STATES = "0,0;-2.5,2.5;2.5,-2.5"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                       epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    o = sub.add_parser("oracle", help="compare with the exact maximum-entropy optimum (env=bandit)")
    o.add_argument("paths", nargs="+", metavar="RUN", help="run dirs or model files")
    o.add_argument("--samples", type=int, default=20000, help="draws of the policy (default 20000)")
    o.add_argument("--alpha", type=float, help="temperature of the optimum (default: the run's final alpha)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--out", type=Path, help="write the results as JSON here")
    o.add_argument("--plot", type=Path, help="1-D bandits: draw pi* and each run's action histogram to this PNG")
    t = sub.add_parser("trajectories", help="paths and action samples on a 2-D point env (env=multigoal)")
    t.add_argument("paths", nargs="+", metavar="RUN", help="run dirs or model files (one panel each)")
    t.add_argument("--episodes", type=int, default=20, help="episodes per run (default 20)")
    t.add_argument("--deterministic", action="store_true", help="the deterministic action (default: sampled)")
    t.add_argument("--states", default=DEFAULT_STATES, help=f"x,y;x,y;... where actions are sampled "
                                                            f"(default {DEFAULT_STATES})")
    t.add_argument("--samples", type=int, default=100, help="action samples per state (default 100)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, help="output dir (default: the first run's dir)/policy")
    return p


def policy_at(path: str) -> Policy:
    return load_policy(path)


def oracle(args) -> int:
    if args.samples < 100:
        raise UsageError(f"--samples={args.samples} is not allowed: expected at least 100")
    results, drawn = {}, []
    for path in args.paths:
        policy = policy_at(path)
        env = policy.make_env()
        try:
            bandit = bandit_of(env)
        except ValueError:
            raise UsageError(f"{path}: trained on {policy.config.env.id}; the oracle needs env=bandit") from None
        alpha = args.alpha if args.alpha is not None else policy.alpha
        if alpha is None or alpha <= 0:
            raise UsageError(f"{path}: algorithm {policy.config.algorithm.name} has no temperature; give --alpha")
        policy.seed(args.seed)
        actions, log_prob = policy.sample_unit(env.reset(seed=args.seed)[0], args.samples)
        report = soft_optimality(bandit, alpha, actions, log_prob)
        entry = report.as_dict()
        lines = report.lines()
        if bandit.dim == 1:
            entry["best_tanh_gaussian_value"] = best_tanh_gaussian(bandit, alpha)
            lines.append(f"best soft value of a single tanh-Gaussian: {entry['best_tanh_gaussian_value']:.4f}")
        results[path] = entry
        drawn.append((bandit, alpha, {"label": f"{policy.config.algorithm.name} (KL {report.kl:.2f})",
                                      "actions": actions[:, 0]}))
        print(f"{path} ({policy.config.algorithm.name}, reward {bandit.kind}):")
        print("\n".join(f"  {line}" for line in lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    if args.plot:
        plot_oracle(drawn, args.plot)
        print(f"wrote {args.plot}")
    return 0


def plot_oracle(drawn: list, path: Path) -> None:
    bandit, alpha, _ = drawn[0]
    if bandit.dim != 1 or any(b.dim != 1 or b.kind != bandit.kind or not math.isclose(a, alpha, rel_tol=1e-5)
                                 for b, a, _ in drawn):
        raise UsageError("--plot draws 1-D bandits of one reward and temperature only")
    optimum = bandit.optimum(alpha)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_action_densities(optimum.actions[:, 0], optimum.density, [run for _, _, run in drawn], path)


def parse_states(text: str) -> list[tuple[float, float]]:
    try:
        states = [tuple(float(v) for v in item.split(",")) for item in text.split(";") if item.strip()]
    except ValueError:
        states = []
    if not states or any(len(s) != 2 for s in states):
        raise UsageError(f"--states={text!r} is not allowed: expected x,y pairs separated by ';', e.g. "
                         f"{DEFAULT_STATES}")
    return states


def rollouts(policy: Policy, episodes: int, seed: int, deterministic: bool) -> tuple[list[np.ndarray], list[int]]:
    """Each episode's path of observations, and the goal each ended at (-1: none)."""
    env = policy.make_env()
    paths, goals = [], []
    policy.seed(seed)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        path, goal, done = [obs], -1, False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs, deterministic=deterministic))
            path.append(obs)
            goal, done = int(info.get("goal", -1)), terminated or truncated
        paths.append(np.array(path))
        goals.append(goal)
    env.close()
    return paths, goals


def trajectories(args) -> int:
    if args.episodes < 1 or args.samples < 1:
        raise UsageError("--episodes and --samples must be >= 1")
    states = parse_states(args.states)
    panels, summary, goals = [], {}, None
    for path in args.paths:
        policy = policy_at(path)
        if policy.obs_spec.shape != (2,) or policy.action_space.shape != (2,):
            raise UsageError(f"{path}: trajectories need 2-D observations and actions (env=multigoal); "
                             f"{policy.config.env.id} has {policy.obs_spec.shape} and {policy.action_space.shape}")
        paths, reached = rollouts(policy, args.episodes, args.seed, args.deterministic)
        samples = {s: policy.sample_unit(np.array(s, np.float32), args.samples)[0] for s in states}
        goals = getattr(policy.make_env().unwrapped, "goals", goals)
        distinct = sorted({g for g in reached if g >= 0})
        title = (f"{policy.config.algorithm.name} seed {policy.config.seed}: {len(distinct)} goal(s) reached in "
                 f"{args.episodes} episodes")
        panels.append({"paths": paths, "samples": samples, "title": title})
        summary[path] = {"algorithm": policy.config.algorithm.name, "goals_reached": distinct,
                         "episodes_at_a_goal": sum(g >= 0 for g in reached), "episodes": args.episodes}
        print(f"{path}: {title}")
    out = args.out or Path(args.paths[0]) / "policy"
    out.mkdir(parents=True, exist_ok=True)
    figure = plot_trajectories(panels, out / "trajectories.png", goals)
    (out / "trajectories.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {figure}, {out / 'trajectories.json'}")
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return oracle(args) if args.command == "oracle" else trajectories(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(PROG, lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
