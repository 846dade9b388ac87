"""Evaluation episodes: a policy run from fixed start seeds on separate envs stepped in lockstep."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np

from sac_runner.envs.make import as_obs, obs_spec

log = logging.getLogger(__name__)

# Eval episodes start from seeds seed + EVAL_SEED_OFFSET + i: never the training envs' seeds.
EVAL_SEED_OFFSET = 10_000


def eval_seeds(seed: int, episodes: int) -> list[int]:
    return [seed + EVAL_SEED_OFFSET + i for i in range(episodes)]


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    frames: list[np.ndarray] = field(default_factory=list)  # the first episode's, when recorded

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def run_episodes(act: Callable[[np.ndarray], np.ndarray], envs: list[gym.Env], seeds: list[int],
                 record: bool = False) -> EvalResult:
    """One episode per env, env i reset with seeds[i]. `act` maps a stack of observations [k, *shape] to
    actions [k, act_dim]: one call serves every episode still running. With `record`, the first env's
    frames are kept (it must have been made with a render mode)."""
    spec = obs_spec(envs[0])
    obs = np.stack([as_obs(env.reset(seed=s)[0], spec) for env, s in zip(envs, seeds)])
    returns = np.zeros(len(envs))
    lengths = np.zeros(len(envs), dtype=np.int64)
    running = np.ones(len(envs), dtype=bool)
    frames = []
    while running.any():
        idx = np.flatnonzero(running)
        if record and running[0]:
            try:
                frames.append(envs[0].render())
            except Exception as e:  # a video problem never stops an evaluation
                log.warning("could not render the eval episode (%s); no video this time", e)
                record, frames = False, []
        actions = act(obs[idx])
        for action, i in zip(actions, idx):
            next_obs, reward, terminated, truncated, _ = envs[i].step(action)
            obs[i] = as_obs(next_obs, spec)
            returns[i] += float(reward)
            lengths[i] += 1
            running[i] = not (terminated or truncated)
    return EvalResult(returns, lengths, frames)
