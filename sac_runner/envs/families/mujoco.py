"""Gymnasium's MuJoCo envs (HalfCheetah, Hopper, ...): MuJoCo's integration state, its model for perturbations,
render size keywords, and MuJoCo's warnings routed into the run dir."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import gymnasium as gym
import gymnasium.envs.mujoco as gm
import mujoco
import numpy as np

log = logging.getLogger("sac_runner")
PRIORITY = 20


def claims_id(gym_id: str) -> bool:
    entry = gym.spec(gym_id).entry_point if gym_id in gym.registry else None
    return isinstance(entry, str) and "mujoco" in entry


def claims(env: gym.Env) -> bool:
    base = env.unwrapped
    return hasattr(base, "model") and hasattr(base, "data") and hasattr(base.model, "body_mass")


def prepare_id(gym_id: str) -> None:
    return None


def render_kwargs(size: int, camera=None) -> dict:
    where = {} if camera is None else {"camera_id": camera} if isinstance(camera, int) else {"camera_name": camera}
    return {"width": size, "height": size, **where}


def integration_state_spec():

    return mujoco.mjtState.mjSTATE_INTEGRATION


def physics_state(env: gym.Env) -> np.ndarray:

    base, spec = env.unwrapped, integration_state_spec()
    state = np.empty(mujoco.mj_stateSize(base.model, spec))
    mujoco.mj_getState(base.model, base.data, state, spec)
    return state


def set_physics_state(env: gym.Env, state: np.ndarray) -> None:

    base = env.unwrapped
    mujoco.mj_setState(base.model, base.data, np.asarray(state, dtype=np.float64), integration_state_spec())
    mujoco.mj_forward(base.model, base.data)


def extra_state(env: gym.Env) -> dict | None:
    return None


def set_extra_state(env: gym.Env, state: dict | None) -> None:
    pass


def model(env: gym.Env):
    return env.unwrapped.model


# ---- MuJoCo's messages ----

_log_file: Path | None = None


def route_messages(run_dir) -> None:
    """MuJoCo's warnings go to the log and to <run dir>/MUJOCO_LOG.TXT (not the current dir; run_dir None: to the
    log only, before a run dir exists); deprecation warnings about the models bundled with Gymnasium (which a user
    cannot fix) are dropped."""
    global _log_file
    mujoco.set_mju_user_warning(_on_warning)
    if run_dir is None:
        return
    _log_file = Path(run_dir) / "MUJOCO_LOG.TXT"
    if hasattr(mujoco, "MjLogConfig"):  # MuJoCo >= 4: where its own log lines go
        config = mujoco.MjLogConfig.get()
        config.logfile = str(_log_file)
        config.set()


def _on_warning(message: str) -> None:
    if "deprecated" in message and _loading_bundled_model():
        return
    log.warning("MuJoCo: %s", message)
    if _log_file is not None:
        try:
            with open(_log_file, "a", encoding="utf-8") as f:
                f.write(f"WARNING {time.ctime()}: {message}\n")
        except OSError:
            pass


def _loading_bundled_model() -> bool:
    """Whether a Gymnasium MuJoCo env is loading one of Gymnasium's own model files right now."""
    assets = (Path(gm.__file__).parent / "assets").resolve()
    frame = sys._getframe(1)
    while frame is not None:
        path = getattr(frame.f_locals.get("self"), "fullpath", None)
        if isinstance(path, str) and Path(path).resolve().is_relative_to(assets):
            return True
        frame = frame.f_back
    return False
