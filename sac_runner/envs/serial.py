"""`num_envs` copies of one env stepped one after another in the training process."""
from __future__ import annotations

import logging
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from sac_runner.envs.families import family_of
from sac_runner.envs.families.generic import elapsed_steps, set_elapsed_steps
from sac_runner.envs.make import as_obs, obs_spec
from sac_runner.envs.pixels import restore_stack
from sac_runner.errors import ConfigError
from sac_runner.rng import numpy_state, set_numpy_state

log = logging.getLogger(__name__)


class SerialEnvs:
    """Copies of one env stepped in turn, each reset automatically at its episode's end.

    Keeps what a transition needs (the true final observation at an episode end) and what an exact resume needs
    (RNG, time-limit counter and simulator state of every copy)."""

    def __init__(self, make: Callable[[], gym.Env], num_envs: int, seed: int, name: str = "the env"):
        self.envs = [make() for _ in range(num_envs)]
        self.env_id = name
        self.spec = obs_spec(self.envs[0])
        self.obs = np.stack([self._reset(env, seed + i) for i, env in enumerate(self.envs)])
        self.episode_return = np.zeros(num_envs)
        self.episode_length = np.zeros(num_envs, dtype=np.int64)

    def _reset(self, env: gym.Env, seed: int | None = None) -> np.ndarray:
        obs, _ = env.reset(seed=seed)
        return as_obs(obs, self.spec)

    @property
    def first(self) -> np.ndarray:
        """Which copies' current observations begin an episode."""
        return self.episode_length == 0

    def step(self, actions: np.ndarray):
        """Returns (next_obs for storage, rewards, terminated, finished episodes as (return, length))."""
        n = len(self.envs)
        next_obs = np.empty_like(self.obs)
        rewards = np.empty(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=np.float32)
        finished = []
        for i, env in enumerate(self.envs):
            obs, reward, term, trunc, info = env.step(actions[i])
            next_obs[i] = as_obs(obs, self.spec)
            rewards[i] = reward
            terminated[i] = float(term)
            self.episode_return[i] += reward
            self.episode_length[i] += info.get("env_steps", 1)  # env steps (ActionRepeat)
            if term or trunc:
                finished.append((float(self.episode_return[i]), int(self.episode_length[i])))
                self.episode_return[i] = 0.0
                self.episode_length[i] = 0
                self.obs[i] = self._reset(env)
            else:
                self.obs[i] = next_obs[i]
        return next_obs, rewards, terminated, finished

    def close(self) -> None:
        for env in self.envs:
            env.close()

    # ---- exact resume ----

    def state_dict(self) -> dict:
        envs = []
        for env in self.envs:
            family = family_of(env)
            physics = family.physics_state(env)
            envs.append({
                "np_random": numpy_state(env.unwrapped.np_random),
                "elapsed_steps": elapsed_steps(env),
                "physics": torch.from_numpy(physics) if physics is not None else None,
                "extra": family.extra_state(env),
            })
        return {
            "envs": envs,
            "obs": torch.from_numpy(self.obs.copy()),
            "episode_return": torch.from_numpy(self.episode_return.copy()),
            "episode_length": torch.from_numpy(self.episode_length.copy()),
        }

    def load_state_dict(self, state: dict) -> bool:
        """Restore every copy, mid-episode included. Where the env exposes no simulator state, episodes
        restart from a reset instead (logged) and False is returned."""
        if len(state["envs"]) != len(self.envs):
            raise ConfigError(f"checkpoint has {len(state['envs'])} envs, this run has num_envs={len(self.envs)}")
        for env, s in zip(self.envs, state["envs"]):
            set_numpy_state(env.unwrapped.np_random, s["np_random"])
        if any(s["physics"] is None for s in state["envs"]):
            log.warning("%s exposes no simulator state: episodes in progress restart from a reset", self.env_id)
            self.obs = np.stack([self._reset(env) for env in self.envs])
            return False
        for env, s in zip(self.envs, state["envs"]):
            family = family_of(env)
            family.set_physics_state(env, s["physics"].numpy())
            extra = s.get("extra", s.get("dm_control"))  # "dm_control": checkpoints of sac-runner <= 0.1
            if extra is not None:
                family.set_extra_state(env, extra)
            set_elapsed_steps(env, s["elapsed_steps"])
        self.obs = state["obs"].numpy().astype(self.spec.dtype).reshape(self.obs.shape)
        for env, obs in zip(self.envs, self.obs):
            restore_stack(env, obs)
        self.episode_return = state["episode_return"].numpy().copy()
        self.episode_length = state["episode_length"].numpy().copy()
        return True
