"""Any Gymnasium env: a classic-control style `state` array is its simulator state, if it has one."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

PRIORITY = 100  # asked last: claims every env


def claims_id(gym_id: str) -> bool:
    return True


def claims(env: gym.Env) -> bool:
    return True


def prepare_id(gym_id: str) -> None:
    return None


def render_kwargs(size: int, camera=None) -> dict:
    return {}


def physics_state(env: gym.Env) -> np.ndarray | None:
    state = getattr(env.unwrapped, "state", None)
    return np.array(state, copy=True) if isinstance(state, np.ndarray) else None


def set_physics_state(env: gym.Env, state: np.ndarray) -> None:
    env.unwrapped.state = np.array(state, copy=True)


def extra_state(env: gym.Env) -> dict | None:
    return None


def set_extra_state(env: gym.Env, state: dict | None) -> None:
    pass


def model(env: gym.Env):
    return None


def route_messages(run_dir) -> None:
    pass


# ---- Gymnasium's own wrappers ----

def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def elapsed_steps(env: gym.Env) -> int:
    """Steps the TimeLimit wrapper has counted in this episode (0 without one)."""
    limit = _time_limit(env)
    return int(limit._elapsed_steps) if limit is not None else 0


def set_elapsed_steps(env: gym.Env, steps: int) -> None:
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = int(steps)
