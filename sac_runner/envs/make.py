"""Gymnasium construction: ids (registered, `module:Id`, an entry point), keyword checks, rendering, action
rescaling to [-1, 1] and action repeat. Family specifics (DeepMind Control, MuJoCo) are asked of envs/families/."""
from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys
import warnings

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator
from omegaconf import OmegaConf

from sac_runner.envs.families import family_of_id
from sac_runner.envs.pixels import pixel_env
from sac_runner.errors import ConfigError
from sac_runner.spec import ObsSpec

log = logging.getLogger(__name__)


def registered_id(env_id: str, entry_point: str | None = None) -> str:
    """The id to pass to gym.make. `module:EnvId` imports `module` first (Gymnasium's convention; the module
    registers its envs); `entry_point` (module:Class) is registered under the id for this process; an env
    family may import what registers its ids."""
    module, _, name = env_id.rpartition(":")
    if module:
        _import(module, f"env.id={env_id!r}")
    if entry_point:
        _register(name, entry_point)
    family_of_id(name).prepare_id(name)
    return name


def _import(module: str, what: str):
    """A user's module, found on sys.path or in the current dir (console scripts do not put it on the path)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
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
    def plain(node) -> dict:
        return dict(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node or {})

    kwargs = plain(env_cfg.get("kwargs"))
    if evaluation:
        kwargs.update(plain(env_cfg.get("eval_kwargs")))
    return kwargs


def env_from_config(env_cfg, *, evaluation: bool = False, render_size: int | None = None) -> gym.Env:
    """The env a run's `env` config describes (a DictConfig or the plain dict saved in model.pt); with
    `evaluation`, eval_kwargs apply. Training, evaluation, sac-eval and load_policy all build envs here."""
    obs = env_cfg.get("obs") or {}
    pixels = dict(obs) if obs.get("kind") == "pixels" else None
    return make_env(env_cfg["id"], render_size=render_size, max_episode_steps=env_cfg.get("max_episode_steps"),
                    kwargs=env_kwargs(env_cfg, evaluation), entry_point=env_cfg.get("entry_point"),
                    action_repeat=env_cfg.get("action_repeat", 1), pixels=pixels,
                    kwargs_key="env.eval_kwargs" if evaluation and env_cfg.get("eval_kwargs") else "env.kwargs")


def make_env(env_id: str, render_size: int | None = None, max_episode_steps: int | None = None, *,
             kwargs: dict | None = None, entry_point: str | None = None, action_repeat: int = 1,
             kwargs_key: str = "env.kwargs", pixels: dict | None = None) -> gym.Env:
    """The env with actions rescaled to [-1, 1] (the policy's range), dict observations flattened and each
    action repeated `action_repeat` times. Observations keep their shape and dtype (obs_spec), or with `pixels`
    (the obs group's size, frame_stack, camera) are stacked frames (envs/pixels.py; frames are then what a video
    records, and render_size is not used). `kwargs` go to the env's constructor. Rendering is opt-in."""
    gym_id = registered_id(env_id, entry_point)
    kwargs = dict(kwargs or {})
    _check_kwargs(env_id, gym_id, kwargs, kwargs_key)
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    if pixels is not None:
        render_size = pixels["size"]
    if render_size is not None:
        kwargs["render_mode"] = "rgb_array"
        kwargs.update(family_of_id(gym_id).render_kwargs(render_size, (pixels or {}).get("camera")))
    try:
        with warnings.catch_warnings():  # Box bounds of +-inf cast to float32 (DeepMind Control): not the user's
            warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
            env = _flat(gym.make(gym_id, **kwargs))
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"env.id={env_id!r} needs packages that are not installed: "
                          f"{' '.join(str(e).split())}") from None
    except TypeError as e:
        if "keyword argument" not in str(e):
            raise
        reason = str(e).split(" was raised from the environment creator")[0]  # Gymnasium appends the kwargs
        unknown = re.search(r"unexpected keyword argument '(\w+)'", reason)
        if unknown and unknown.group(1) == "render_mode":  # a reserved keyword: the runner asked to render
            asked = "obs=pixels" if pixels is not None else "rendering (logger.video=true)"
            raise ConfigError(f"{asked} but env.id={env_id!r} cannot render: its constructor takes no render_mode; "
                              f"{'use obs=state' if pixels is not None else 'set logger.video=false'}") from None
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
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    if pixels is not None:  # after the repeat: a frame is rendered once per agent step
        env = pixel_env(env, pixels["size"], pixels["frame_stack"], env_id)
    ones = np.ones(space.shape, dtype=np.float32)
    with warnings.catch_warnings():  # the same cast, in rescaling's own Box (DeepMind Control)
        warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
        return gym.wrappers.RescaleAction(env, -ones, ones)


def _flat(env: gym.Env) -> gym.Env:
    """DeepMind Control's named observations (a Dict space) as one flat vector."""
    return gym.wrappers.FlattenObservation(env) if isinstance(env.observation_space, gym.spaces.Dict) else env


def _check_kwargs(env_id: str, gym_id: str, kwargs: dict, key: str) -> None:
    """Keywords the env's constructor does not take are refused, naming those it does (when readable)."""
    if not kwargs:
        return
    spec = gym.spec(gym_id)
    try:

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


def obs_spec(env: gym.Env) -> ObsSpec:
    """The shape and dtype the runner keeps the env's observations in: uint8 (images) as they are, any other
    dtype as float32 (what the networks take; MuJoCo's float64 observations are rounded once, on arrival)."""
    space = env.observation_space
    dtype = np.dtype(np.uint8) if np.dtype(space.dtype) == np.uint8 else np.dtype(np.float32)
    return ObsSpec(tuple(int(s) for s in space.shape), dtype)


def act_dim(env: gym.Env) -> int:
    return int(np.prod(env.action_space.shape))


def as_obs(obs, spec: ObsSpec) -> np.ndarray:
    """An observation as the array replay and the agent take: its spec's dtype and shape."""
    return np.asarray(obs, dtype=spec.dtype).reshape(spec.shape)
