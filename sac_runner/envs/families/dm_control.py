"""DeepMind Control Suite through Shimmy (`dm_control/<domain>-<task>-v0`, the dmc extra): the dm_control
environment inside Shimmy's wrapper, its physics state and step counter for exact resume, render keywords."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from sac_runner.envs.families.mujoco import integration_state_spec
from sac_runner.errors import ConfigError

PRIORITY = 10
PREFIX = "dm_control/"


def claims_id(gym_id: str) -> bool:
    return gym_id.startswith(PREFIX)


def _inner(env: gym.Env):
    """The dm_control environment inside Shimmy's wrapper; None for other envs."""
    inner = getattr(env.unwrapped, "_env", None)
    return inner if hasattr(getattr(inner, "physics", None), "get_state") else None


def claims(env: gym.Env) -> bool:
    return _inner(env) is not None


def prepare_id(gym_id: str) -> None:
    """Shimmy registers the dm_control/ ids when imported."""
    if gym_id in gym.registry:
        return
    try:
        import shimmy  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"env.id={gym_id!r} needs the DeepMind Control extra: pip install 'sac-runner[dmc]' "
                          f"({type(e).__name__}: {e})") from None


def render_kwargs(size: int, camera=None) -> dict:
    return {"render_kwargs": {"width": size, "height": size, **({} if camera is None else {"camera_id": camera})}}


def physics_state(env: gym.Env) -> np.ndarray:
    return _inner(env).physics.get_state(sig=integration_state_spec())


def set_physics_state(env: gym.Env, state: np.ndarray) -> None:
    physics = _inner(env).physics
    physics.set_state(np.asarray(state, dtype=np.float64), sig=integration_state_spec())
    physics.forward()  # dm_control steps assume the derived quantities are current


def extra_state(env: gym.Env) -> dict:
    """dm_control's own episode counter (its time limit)."""
    dm = _inner(env)
    return {"step_count": int(dm._step_count), "reset_next_step": bool(dm._reset_next_step)}


def set_extra_state(env: gym.Env, state: dict | None) -> None:
    dm = _inner(env)
    dm._step_count, dm._reset_next_step = state["step_count"], state["reset_next_step"]


def model(env: gym.Env):
    return None


def route_messages(run_dir) -> None:
    pass
