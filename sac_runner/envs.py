"""Gymnasium construction, action rescaling, seeding, and env state for exact resume."""
from __future__ import annotations

import logging
import os
import sys

import gymnasium as gym
import numpy as np
import torch

from .config import ConfigError

log = logging.getLogger(__name__)


def use_headless_rendering() -> None:
    """MuJoCo renders through EGL (Mesa's software renderer on CPU machines) when there is no display."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
        if os.environ["MUJOCO_GL"] == "egl":
            os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def make_env(env_id: str, render_size: int | None = None, max_episode_steps: int | None = None) -> gym.Env:
    """The env with actions rescaled to [-1, 1] (the policy's range). Rendering is opt-in."""
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if render_size is not None:
        kwargs["render_mode"] = "rgb_array"
        if _is_mujoco(env_id):
            kwargs.update(width=render_size, height=render_size)
    env = gym.make(env_id, **kwargs)
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        env.close()
        raise ConfigError(f"env.id={env_id!r} has a {type(space).__name__} action space; SAC needs a continuous Box")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        env.close()
        raise ConfigError(f"env.id={env_id!r} has unbounded actions; SAC's tanh policy needs finite bounds")
    ones = np.ones(space.shape, dtype=np.float32)
    return gym.wrappers.RescaleAction(env, -ones, ones)


def _is_mujoco(env_id: str) -> bool:
    entry = gym.spec(env_id).entry_point
    return isinstance(entry, str) and "mujoco" in entry


def flat_obs(obs) -> np.ndarray:
    """An observation as the flat float32 vector the agent and the replay buffer take."""
    return np.asarray(obs, dtype=np.float32).reshape(-1)


def env_dims(env: gym.Env) -> tuple[int, int]:
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def _mujoco_state_spec():
    import mujoco

    return mujoco.mjtState.mjSTATE_INTEGRATION


def get_physics_state(env: gym.Env) -> np.ndarray | None:
    """The simulator state needed to continue the episode bit for bit; None if unknown for this env."""
    base = env.unwrapped
    if hasattr(base, "model") and hasattr(base, "data"):
        import mujoco

        spec = _mujoco_state_spec()
        state = np.empty(mujoco.mj_stateSize(base.model, spec))
        mujoco.mj_getState(base.model, base.data, state, spec)
        return state
    if isinstance(getattr(base, "state", None), np.ndarray):
        return np.array(base.state, copy=True)
    return None


def set_physics_state(env: gym.Env, state: np.ndarray) -> None:
    base = env.unwrapped
    if hasattr(base, "model") and hasattr(base, "data"):
        import mujoco

        mujoco.mj_setState(base.model, base.data, np.asarray(state, dtype=np.float64), _mujoco_state_spec())
        mujoco.mj_forward(base.model, base.data)
    else:
        base.state = np.array(state, copy=True)


class EnvPool:
    """`num_envs` copies of one env stepped in turn, reset automatically at episode ends.

    Keeps what a transition needs (the true final observation at an episode end) and what an
    exact resume needs (RNG, time-limit counter and simulator state of every copy)."""

    def __init__(self, env_id: str, num_envs: int, seed: int, max_episode_steps: int | None = None):
        self.envs = [make_env(env_id, max_episode_steps=max_episode_steps) for _ in range(num_envs)]
        self.env_id = env_id
        self.obs = np.stack([self._reset(env, seed + i) for i, env in enumerate(self.envs)])
        self.episode_return = np.zeros(num_envs)
        self.episode_length = np.zeros(num_envs, dtype=np.int64)

    @staticmethod
    def _reset(env: gym.Env, seed: int | None = None) -> np.ndarray:
        obs, _ = env.reset(seed=seed)
        return flat_obs(obs)

    def step(self, actions: np.ndarray):
        """Returns (next_obs for storage, rewards, terminated, finished episodes as (return, length))."""
        n = len(self.envs)
        next_obs = np.empty_like(self.obs)
        rewards = np.empty(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=np.float32)
        finished = []
        for i, env in enumerate(self.envs):
            obs, reward, term, trunc, _ = env.step(actions[i])
            next_obs[i] = flat_obs(obs)
            rewards[i] = reward
            terminated[i] = float(term)
            self.episode_return[i] += reward
            self.episode_length[i] += 1
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
            physics = get_physics_state(env)
            limit = _time_limit(env)
            envs.append({
                "np_random": env.unwrapped.np_random.bit_generator.state,
                "elapsed_steps": int(limit._elapsed_steps) if limit is not None else 0,
                "physics": torch.from_numpy(physics) if physics is not None else None,
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
            env.unwrapped.np_random.bit_generator.state = s["np_random"]
        if any(s["physics"] is None for s in state["envs"]):
            log.warning("%s exposes no simulator state: episodes in progress restart from a reset", self.env_id)
            self.obs = np.stack([self._reset(env) for env in self.envs])
            return False
        for env, s in zip(self.envs, state["envs"]):
            set_physics_state(env, s["physics"].numpy())
            limit = _time_limit(env)
            if limit is not None:
                limit._elapsed_steps = s["elapsed_steps"]
        self.obs = state["obs"].numpy().copy()
        self.episode_return = state["episode_return"].numpy().copy()
        self.episode_length = state["episode_length"].numpy().copy()
        return True
