"""After training: a saved policy (model.pt, best_model.pt or a checkpoint) loaded to act, evaluate or fine-tune.

    from sac_runner import load_policy
    policy = load_policy("outputs/2026-11-25/12-00-00")       # a run dir, model.pt, best_model.pt or step_*.pt
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)                                  # deterministic (the mean action), in env units
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError

MODEL_FILE = "model.pt"
BEST_MODEL_FILE = "best_model.pt"


class PolicyError(ConfigError):
    """A saved policy that cannot be found, read or used here: one line for the user."""


@dataclass
class SavedRun:
    """What any of the three file kinds holds for acting and fine-tuning."""
    path: Path
    config: dict
    weights: dict  # name -> state dict or tensor, as the agent's weights() gives them
    obs_normalizer: Any = None
    step: int | None = None  # checkpoints only
    dims: tuple[int | None, int | None] = (None, None)  # (obs_dim, act_dim) where the file says


def resolve_model_file(path: str | Path, best: bool = False) -> Path:
    """A run dir stands for its model.pt (best_model.pt with `best`; a run still in progress: its newest
    checkpoint); a file stands for itself."""
    from . import checkpoint as ckpt

    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise PolicyError(f"{path}: no such file or directory (give a run dir, model.pt, best_model.pt or a "
                          "checkpoints/step_*.pt file)")
    if best:
        if not (p / BEST_MODEL_FILE).is_file():
            raise PolicyError(f"{p} has no {BEST_MODEL_FILE} (written from the first evaluation after "
                              "learning_starts by this version)")
        return p / BEST_MODEL_FILE
    if (p / MODEL_FILE).is_file():
        return p / MODEL_FILE
    found = ckpt.list_checkpoints(p / "checkpoints") or ckpt.list_checkpoints(p)
    if found:
        return found[-1][1]
    raise PolicyError(f"{p} holds no {MODEL_FILE}, {BEST_MODEL_FILE} or checkpoints/step_*.pt: "
                      "is it a sac-run run dir?")


def load_saved(path: str | Path, best: bool = False) -> SavedRun:
    from . import checkpoint as ckpt

    file = resolve_model_file(path, best)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or foreign files
        raise PolicyError(f"{file} could not be read ({type(e).__name__}): it is damaged, truncated or not a "
                          "sac-run model or checkpoint") from None
    if isinstance(state, dict) and "format" in state and "agent" in state:  # a checkpoint
        try:
            ckpt.load_file(file)  # its manifest check, when it has one
        except ckpt.CheckpointError as e:
            if file.with_suffix(".json").is_file():
                raise PolicyError(str(e)) from None
        nets, step = state["agent"], int(state.get("trainer", {}).get("step", 0))
    else:
        nets, step = state, None
    if not isinstance(nets, dict) or not isinstance(state.get("config"), dict) or "actor" not in nets:
        raise PolicyError(f"{file} is not a sac-run model or checkpoint (it lacks the actor or the config)")
    weights = {k: v for k, v in nets.items() if k not in ("config", "obs_dim", "act_dim", "obs_normalizer")}
    if "critic" in weights and "critic_target" not in weights:  # a model.pt written before targets were saved
        weights["critic_target"] = weights["critic"]
    first = next((v for k, v in weights["actor"].items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2),
                 None)
    dims = (state.get("obs_dim", None if first is None else int(first.shape[1])), state.get("act_dim"))
    return SavedRun(path=file, config=state["config"], weights=weights, obs_normalizer=state.get("obs_normalizer"),
                    step=step, dims=dims)


def run_config(saved: dict) -> DictConfig:
    """A saved run's config with keys added since it was written filled from the schema's defaults."""
    from . import config as schema

    defaults = {}
    for f in dataclasses.fields(schema.Config):
        kind = schema.Config.__annotations__.get(f.name)
        group = getattr(schema, kind, None) if isinstance(kind, str) else None
        if dataclasses.is_dataclass(group):
            defaults[f.name] = OmegaConf.to_container(OmegaConf.structured(group))
        elif f.default is not dataclasses.MISSING and f.default != "???":
            defaults[f.name] = f.default
    cfg = OmegaConf.merge(OmegaConf.create(defaults), OmegaConf.create(saved))
    return cfg


def make_run_env(cfg: DictConfig, render_size: int | None = None):
    """An eval env of the run, built as the trainer builds its own (actions in [-1, 1])."""
    import gymnasium as gym

    from .trainer import make_eval_env

    try:
        return make_eval_env(cfg, render_size=render_size)
    except ConfigError as e:
        raise PolicyError(f"the run's env cannot be made here: {e}") from None
    except (gym.error.Error, ImportError) as e:
        first = (" ".join(str(e).split()) or type(e).__name__)
        raise PolicyError(f"the run's env {cfg.env.id!r} cannot be made here ({first}); install the package it "
                          "needs") from None


def _native(env):
    """The env with its own action bounds: the trainer's [-1, 1] rescaling taken off."""
    import gymnasium as gym

    if isinstance(env, gym.wrappers.RescaleAction):
        return env.env
    raise TypeError(f"expected the trainer's RescaleAction outermost, got {type(env).__name__}")


class Policy:
    """A trained policy: `act` takes observations as the env gives them and returns actions in the env's own
    bounds. `config` is the run's config (a plain dict)."""

    def __init__(self, saved: SavedRun, device: str | torch.device = "cpu"):
        from gymnasium.wrappers.utils import rescale_box

        from .envs import env_dims
        from .trainer import make_agent

        self.path = saved.path
        self.config = saved.config
        self.step = saved.step
        self._cfg = run_config(saved.config)
        probe = make_run_env(self._cfg)
        try:
            self.observation_space = probe.observation_space
            self.action_space = _native(probe).action_space
            obs_dim, act_dim = env_dims(probe)
        finally:
            probe.close()
        with torch.random.fork_rng(devices=[]):  # building an agent seeds torch: keep the caller's RNG as it was
            self.agent = make_agent(self._cfg, obs_dim, act_dim, device, compile=False)
        load_networks(self.agent, saved, obs_dim, act_dim, what=str(saved.path))
        self.device = self.agent.device
        # The trainer's own map from [-1, 1] to the env's bounds (the same function, so the same floats).
        _, _, self._to_env = rescale_box(self.action_space, -np.ones(self.action_space.shape, np.float32),
                                         np.ones(self.action_space.shape, np.float32))
        self._normalize = _obs_normalizer(saved.obs_normalizer)

    def seed(self, seed: int) -> None:
        """Seeds the sampling of stochastic actions."""
        self.agent.generator.manual_seed(seed)

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        """One observation -> one action; a stack of observations [k, ...] -> [k, *action shape]."""
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == len(self.observation_space.shape)
        flat = obs.reshape(1 if single else obs.shape[0], -1)
        actions = self._to_env(self.act_unit(flat, deterministic))
        actions = actions.reshape(-1, *self.action_space.shape)
        return actions[0] if single else actions

    def act_unit(self, flat_obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Flat observations [k, obs_dim] -> actions in [-1, 1], as the trainer's agent gives them."""
        if self._normalize is not None:
            flat_obs = self._normalize(flat_obs)
        obs = torch.as_tensor(flat_obs, dtype=torch.float32, device=self.device)
        return self.agent.act(obs, deterministic=deterministic).cpu().numpy()

    def make_env(self, render_size: int | None = None):
        """The run's env (its eval settings) with the env's own action bounds, as `act` returns them."""
        return _native(make_run_env(self._cfg, render_size))


def _obs_normalizer(state):
    """The observation normalization a run saved beside its networks (None: the run used none)."""
    if state is None:
        return None
    from . import envs

    build = getattr(envs, "obs_normalizer_from_state", None)
    if build is None:
        raise PolicyError("this model was saved with observation normalization, which this version of "
                          "sac-runner cannot apply")
    return build(state)


def load_networks(agent, saved: SavedRun, obs_dim: int, act_dim: int, what: str, alpha: bool = True) -> None:
    """Copy a saved run's networks (and SAC's α) into `agent` through its load_weights; shapes must fit."""
    saved_obs, saved_act = saved.dims
    if (saved_obs is not None and saved_obs != obs_dim) or (saved_act is not None and saved_act != act_dim):
        raise PolicyError(f"{what}: its policy takes observations of size {saved_obs} and gives actions of size "
                          f"{saved_act} (env {saved.config.get('env', {}).get('id')}), this env has {obs_dim} and "
                          f"{act_dim}")
    try:
        agent.load_weights(saved.weights, reset=() if alpha else ("log_alpha",))
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise PolicyError(f"{what}: its networks do not fit this run's network settings ({detail})") from None


def load_policy(path: str | Path, best: bool = False, device: str | torch.device = "cpu") -> Policy:
    """A run dir (its model.pt; with `best`, its best_model.pt), a model.pt, best_model.pt or checkpoint file."""
    return Policy(load_saved(path, best), device)
