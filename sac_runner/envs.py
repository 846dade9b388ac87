"""Gymnasium construction, action rescaling, seeding, and env state for exact resume."""
from __future__ import annotations

import inspect
import logging
import os
import re
import sys
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

from .config import ConfigError

log = logging.getLogger(__name__)


def use_headless_rendering() -> None:
    """MuJoCo renders through EGL (Mesa's software renderer on CPU machines) when there is no display."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
        if os.environ["MUJOCO_GL"] == "egl":
            os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def registered_id(env_id: str, entry_point: str | None = None) -> str:
    """The id to pass to gym.make. `module:EnvId` imports `module` first (Gymnasium's convention; the module
    registers its envs); `entry_point` (module:Class) is registered under the id for this process;
    dm_control/... ids are Shimmy's (the dmc extra)."""
    module, _, name = env_id.rpartition(":")
    if module:
        _import(module, f"env.id={env_id!r}")
    if entry_point:
        _register(name, entry_point)
    if name.startswith("dm_control/") and name not in gym.registry:
        try:
            import shimmy  # noqa: F401  (registers the dm_control/ ids)
        except ImportError as e:
            raise ConfigError(f"env.id={env_id!r} needs the DeepMind Control extra: pip install 'sac-runner[dmc]' "
                              f"({type(e).__name__}: {e})") from None
    return name


def _import(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as e:  # the user's module: any error in it is theirs to fix
        raise ConfigError(f"{what}: cannot import module {module!r} ({type(e).__name__}: {e}); is it installed "
                          "or on PYTHONPATH?") from None


def _register(env_id: str, entry_point: str) -> None:
    module, _, attr = entry_point.partition(":")
    if not module or not attr:
        raise ConfigError(f"env.entry_point={entry_point!r} is not allowed: expected module:Class")
    if not callable(getattr(_import(module, f"env.entry_point={entry_point!r}"), attr, None)):
        raise ConfigError(f"env.entry_point={entry_point!r}: module {module!r} has no class or function {attr!r}")
    if env_id in gym.registry:
        if gym.registry[env_id].entry_point != entry_point:
            raise ConfigError(f"env.id={env_id!r} is already registered (entry point "
                              f"{gym.registry[env_id].entry_point!r}); give env.entry_point={entry_point} a new id")
        return
    try:
        gym.register(id=env_id, entry_point=entry_point)
    except gym.error.Error as e:
        raise ConfigError(f"env.id={env_id!r} cannot be registered: {e}") from None


def env_kwargs(env_cfg, evaluation: bool = False) -> dict:
    """gym.make's keyword arguments from an env config (DictConfig or plain dict): kwargs, and in
    evaluation eval_kwargs on top."""
    plain = lambda node: dict(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node or {})
    kwargs = plain(env_cfg.get("kwargs"))
    if evaluation:
        kwargs.update(plain(env_cfg.get("eval_kwargs")))
    return kwargs


def env_from_config(env_cfg, *, evaluation: bool = False, render_size: int | None = None) -> gym.Env:
    """The env a run's `env` config describes (a DictConfig or the plain dict saved in model.pt); with
    `evaluation`, eval_kwargs apply. Training, evaluation, sac-eval and load_policy all build envs here."""
    return make_env(env_cfg["id"], render_size=render_size, max_episode_steps=env_cfg.get("max_episode_steps"),
                    kwargs=env_kwargs(env_cfg, evaluation), entry_point=env_cfg.get("entry_point"),
                    action_repeat=env_cfg.get("action_repeat", 1),
                    kwargs_key="env.eval_kwargs" if evaluation and env_cfg.get("eval_kwargs") else "env.kwargs")


def make_env(env_id: str, render_size: int | None = None, max_episode_steps: int | None = None, *,
             kwargs: dict | None = None, entry_point: str | None = None, action_repeat: int = 1,
             kwargs_key: str = "env.kwargs") -> gym.Env:
    """The env with actions rescaled to [-1, 1] (the policy's range), dict observations flattened and each
    action repeated `action_repeat` times. `kwargs` go to the env's constructor. Rendering is opt-in."""
    gym_id = registered_id(env_id, entry_point)
    kwargs = dict(kwargs or {})
    _check_kwargs(env_id, gym_id, kwargs, kwargs_key)
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    if render_size is not None:
        kwargs["render_mode"] = "rgb_array"
        if _is_mujoco(gym_id):
            kwargs.update(width=render_size, height=render_size)
        elif gym_id.startswith("dm_control/"):
            kwargs["render_kwargs"] = {"width": render_size, "height": render_size}
    try:
        env = gym.make(gym_id, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"env.id={env_id!r} needs packages that are not installed: {' '.join(str(e).split())}") from None
    except TypeError as e:
        if "keyword argument" not in str(e):
            raise
        reason = str(e).split(" was raised from the environment creator")[0]  # Gymnasium appends the kwargs
        unknown = re.search(r"unexpected keyword argument '(\w+)'", reason)
        if unknown:
            raise ConfigError(f"{kwargs_key}.{unknown.group(1)} is not a keyword argument of env.id={env_id!r} "
                              f"({reason})") from None
        raise ConfigError(f"{kwargs_key}: env.id={env_id!r} refused its keyword arguments ({reason})") from None
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        env.close()
        raise ConfigError(f"env.id={env_id!r} has a {type(space).__name__} action space; SAC needs a continuous Box")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        env.close()
        raise ConfigError(f"env.id={env_id!r} has unbounded actions; SAC's tanh policy needs finite bounds")
    if isinstance(env.observation_space, gym.spaces.Dict):  # DeepMind Control's named observations
        env = gym.wrappers.FlattenObservation(env)
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    ones = np.ones(space.shape, dtype=np.float32)
    return gym.wrappers.RescaleAction(env, -ones, ones)


def _check_kwargs(env_id: str, gym_id: str, kwargs: dict, key: str) -> None:
    """Keywords the env's constructor does not take are refused, naming those it does (when readable)."""
    if not kwargs:
        return
    spec = gym.spec(gym_id)
    try:
        from gymnasium.envs.registration import load_env_creator

        creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
        params = inspect.signature(creator).parameters
    except Exception:  # unreadable: gym.make's TypeError is reported instead
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and n not in ("self", "render_mode")]
    unknown = sorted(set(kwargs) - set(takes) - set(spec.kwargs))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not a keyword argument of env.id={env_id!r}; it takes: "
                          f"{', '.join(takes) or 'none'}")


class ActionRepeat(gym.Wrapper):
    """Each action applied `repeat` times (rewards summed; stops at an episode end). info["env_steps"] says
    how many env steps the call took."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action):
        total = 0.0
        for i in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, "env_steps": i + 1}


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


def _dm_control_env(env: gym.Env):
    """The dm_control environment inside Shimmy's wrapper; None for other envs."""
    inner = getattr(env.unwrapped, "_env", None)
    return inner if hasattr(getattr(inner, "physics", None), "get_state") else None


def get_physics_state(env: gym.Env) -> np.ndarray | None:
    """The simulator state needed to continue the episode bit for bit; None if unknown for this env."""
    base = env.unwrapped
    dm = _dm_control_env(env)
    if dm is not None:  # dm_control's own state API, with MuJoCo's full integration state
        return dm.physics.get_state(sig=_mujoco_state_spec())
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
    dm = _dm_control_env(env)
    if dm is not None:
        dm.physics.set_state(np.asarray(state, dtype=np.float64), sig=_mujoco_state_spec())
        dm.physics.forward()  # dm_control steps assume the derived quantities are current
    elif hasattr(base, "model") and hasattr(base, "data"):
        import mujoco

        mujoco.mj_setState(base.model, base.data, np.asarray(state, dtype=np.float64), _mujoco_state_spec())
        mujoco.mj_forward(base.model, base.data)
    else:
        base.state = np.array(state, copy=True)


def rng_state(rng) -> dict:
    """A Generator's or a legacy RandomState's (dm_control's) state, arrays as tensors (weights_only loading)."""
    if isinstance(rng, np.random.RandomState):
        return rng_state_to_tensors(rng.get_state(legacy=False))
    return rng.bit_generator.state


def set_rng_state(rng, state: dict) -> None:
    if isinstance(rng, np.random.RandomState):
        rng.set_state(rng_state_from_tensors(state))
    else:
        rng.bit_generator.state = state


def rng_state_to_tensors(state: dict) -> dict:
    """NumPy's legacy RNG state (np.random.get_state(legacy=False)) holds an array; checkpoints hold tensors."""
    return {**state, "state": {**state["state"], "key": torch.from_numpy(state["state"]["key"].astype(np.int64))}}


def rng_state_from_tensors(state: dict) -> dict:
    return {**state, "state": {**state["state"], "key": state["state"]["key"].numpy().astype(np.uint32)}}


class EnvPool:
    """`num_envs` copies of one env stepped in turn, reset automatically at episode ends.

    Keeps what a transition needs (the true final observation at an episode end) and what an
    exact resume needs (RNG, time-limit counter and simulator state of every copy)."""

    def __init__(self, make: Callable[[], gym.Env], num_envs: int, seed: int, name: str = "the env"):
        self.envs = [make() for _ in range(num_envs)]
        self.env_id = name
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
            obs, reward, term, trunc, info = env.step(actions[i])
            next_obs[i] = flat_obs(obs)
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
            physics = get_physics_state(env)
            limit = _time_limit(env)
            dm = _dm_control_env(env)
            envs.append({
                "np_random": rng_state(env.unwrapped.np_random),
                "elapsed_steps": int(limit._elapsed_steps) if limit is not None else 0,
                "physics": torch.from_numpy(physics) if physics is not None else None,
                # dm_control's own episode counter (its time limit)
                "dm_control": {"step_count": int(dm._step_count), "reset_next_step": bool(dm._reset_next_step)}
                if dm is not None else None,
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
            set_rng_state(env.unwrapped.np_random, s["np_random"])
        if any(s["physics"] is None for s in state["envs"]):
            log.warning("%s exposes no simulator state: episodes in progress restart from a reset", self.env_id)
            self.obs = np.stack([self._reset(env) for env in self.envs])
            return False
        for env, s in zip(self.envs, state["envs"]):
            set_physics_state(env, s["physics"].numpy())
            dm = _dm_control_env(env)
            if dm is not None:
                dm._step_count, dm._reset_next_step = s["dm_control"]["step_count"], s["dm_control"]["reset_next_step"]
            limit = _time_limit(env)
            if limit is not None:
                limit._elapsed_steps = s["elapsed_steps"]
        self.obs = state["obs"].numpy().copy()
        self.episode_return = state["episode_return"].numpy().copy()
        self.episode_length = state["episode_length"].numpy().copy()
        return True


def obs_normalizer_from_state(state: dict):
    """model.pt's "obs_normalizer" as a callable on flat observations, statistics frozen (normalization.py)."""
    from .normalization import ObsNormalizer

    return ObsNormalizer.from_state_dict(state)
