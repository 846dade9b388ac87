"""Stable-Baselines3's SAC under the Figure 1 protocol, as context for RESULTS.md.

    python benchmarks/sb3_figure1.py --seed 0          # one run -> benchmarks/results/figure1_context/sb3_sac/seed=0/

The protocol is conf/experiment/figure1.yaml's for `algorithm=sac`, read from the same config the sweep composes:
HalfCheetah-v5, 100k env steps, uniform-random actions for the first learning_starts steps, then one gradient
step per env step with the paper's Table 1 settings (SB3's defaults are the same, save learning_starts), and
an evaluation of eval_episodes deterministic episodes on a separate env every eval_every steps. Each run writes
metrics.jsonl in sac-runner's format (global_step, eval/return_mean) plus run.json (versions, settings, minutes),
so `python benchmarks/figure1.py page` puts its final returns beside ours. SB3 runs do not resume: an interrupted
run starts again. Needs `pip install -c constraints.txt stable-baselines3` (not a dependency of sac-runner).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from throughput import machine_info  # this folder's bench: CPU, its bf16 support, torch and SB3 versions

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "figure1_context" / "sb3_sac"


def protocol() -> dict:
    """The sweep's settings for SAC on HalfCheetah, composed as `sac-run +experiment=figure1 algorithm=sac` does."""
    from sac_runner.config.compose import compose_config

    cfg = compose_config(["+experiment=figure1", "algorithm=sac", "env=HalfCheetah"])
    hp = cfg.hyperparameters
    return {"env_id": cfg.env.id, "total_steps": int(cfg.total_steps), "learning_starts": int(cfg.learning_starts),
            "eval_every": int(cfg.eval_every), "eval_episodes": int(cfg.eval_episodes), "lr": float(hp.lr),
            "buffer_size": int(hp.buffer_size), "batch_size": int(hp.batch_size), "gamma": float(hp.gamma),
            "tau": float(hp.tau), "hidden_sizes": list(cfg.network.hidden_sizes)}


def run(seed: int, out: Path, total_steps: int | None) -> Path:
    try:
        from stable_baselines3 import SAC
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.evaluation import evaluate_policy
        from stable_baselines3.common.monitor import Monitor
    except ImportError:
        sys.exit("sb3_figure1: stable-baselines3 is not installed; pip install -c constraints.txt stable-baselines3")
    import gymnasium as gym
    import torch

    torch.set_num_threads(1)
    p = protocol()
    if total_steps is not None:
        p["total_steps"] = total_steps
    run_dir = out / f"seed={seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = (run_dir / "metrics.jsonl").open("w")
    eval_env = Monitor(gym.make(p["env_id"]))
    eval_env.reset(seed=seed + 10_000)
    start = time.perf_counter()

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % p["eval_every"] == 0:
                returns, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=p["eval_episodes"],
                                             deterministic=True, return_episode_rewards=True)
                row = {"global_step": self.num_timesteps, "eval/return_mean": float(sum(returns) / len(returns)),
                       "eval/return_std": float(torch.tensor(returns).std(unbiased=False)),
                       "time/minutes": (time.perf_counter() - start) / 60}
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                print(f"seed {seed} step {self.num_timesteps}: return {row['eval/return_mean']:.0f} "
                      f"({row['time/minutes']:.1f} min)", flush=True)
            return True

    model = SAC("MlpPolicy", gym.make(p["env_id"]), learning_rate=p["lr"], buffer_size=p["buffer_size"],
                learning_starts=p["learning_starts"], batch_size=p["batch_size"], tau=p["tau"], gamma=p["gamma"],
                train_freq=1, gradient_steps=1, ent_coef="auto", policy_kwargs={"net_arch": p["hidden_sizes"]},
                seed=seed, device="cpu")
    model.learn(total_timesteps=p["total_steps"], callback=Evaluate(), progress_bar=False)
    metrics.close()
    info = {"seed": seed, "protocol": p, "minutes": (time.perf_counter() - start) / 60,
            "machine": machine_info(threads=1)}
    (run_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {run_dir}")
    return run_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", type=Path, default=OUT, help=f"where seed=<n>/ goes (default {OUT})")
    p.add_argument("--total-steps", type=int, default=None, help="shorter runs, for a check (default: the sweep's)")
    args = p.parse_args(argv)
    run(args.seed, args.out, args.total_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
