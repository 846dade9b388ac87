"""After training: a saved policy (model.pt, best_model.pt or a checkpoint) loaded to act or evaluate.

    from sac_runner import load_policy
    policy = load_policy("outputs/2026-11-25/12-00-00")       # a run dir, model.pt, best_model.pt or step_*.pt
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)                                  # deterministic (the mean action), in env units
"""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers.utils import rescale_box
from omegaconf import DictConfig, OmegaConf

from sac_runner.config.agent import make_agent
from sac_runner.config.schema import run_schema, schema_defaults
from sac_runner.envs.make import act_dim as env_act_dim
from sac_runner.envs.make import env_from_config, obs_spec
from sac_runner.envs.normalization import ObsNormalizer
from sac_runner.envs.pixels import as_stack
from sac_runner.errors import ConfigError, PolicyError
from sac_runner.runs.models import SavedRun, load_networks, load_saved


def run_config(saved: dict) -> DictConfig:
    """A saved run's config with keys added since it was written filled from the schema's defaults."""
    return OmegaConf.merge(OmegaConf.create(schema_defaults(run_schema())), OmegaConf.create(saved))


def make_run_env(cfg: DictConfig, render_size: int | None = None) -> gym.Env:
    """An eval env of the run, built as the trainer builds its own (actions in [-1, 1])."""
    try:
        return env_from_config(cfg.env, evaluation=True, render_size=render_size)
    except ConfigError as e:
        raise PolicyError(f"the run's env cannot be made here: {e}") from None
    except (gym.error.Error, ImportError) as e:
        first = (" ".join(str(e).split()) or type(e).__name__)
        raise PolicyError(f"the run's env {cfg.env.id!r} cannot be made here ({first}); install the package it "
                          "needs") from None


def _native(env: gym.Env) -> gym.Env:
    """The env with its own action bounds: the trainer's [-1, 1] rescaling taken off."""
    if isinstance(env, gym.wrappers.RescaleAction):
        return env.env
    raise TypeError(f"expected the trainer's RescaleAction outermost, got {type(env).__name__}")


class Policy:
    """A trained policy: `act` takes observations as the env gives them and returns actions in the env's own
    bounds. `config` is the run's config (an OmegaConf config: attribute access, `config.env.id`)."""

    def __init__(self, saved: SavedRun, device: str | torch.device = "cpu"):
        self.path = saved.path
        self.step = saved.step
        self.config = run_config(saved.config)
        probe = make_run_env(self.config)
        try:
            self.observation_space = probe.observation_space
            self.action_space = _native(probe).action_space
            self.obs_spec, act_dim = obs_spec(probe), env_act_dim(probe)
        finally:
            probe.close()
        with torch.random.fork_rng(devices=[]):  # building an agent seeds torch: keep the caller's RNG as it was
            self.agent = make_agent(self.config, self.obs_spec, act_dim, device, compile=False)
        load_networks(self.agent, saved, self.agent.obs_dim, act_dim, what=str(saved.path))
        self.device = self.agent.device
        # The trainer's own map from [-1, 1] to the env's bounds (the same function, so the same floats).
        _, _, self._to_env = rescale_box(self.action_space, -np.ones(self.action_space.shape, np.float32),
                                         np.ones(self.action_space.shape, np.float32))
        self._normalize = ObsNormalizer.from_state_dict(saved.obs_normalizer) if saved.obs_normalizer else None

    def __repr__(self) -> str:
        c = self.config
        step = f"step {self.step}" if self.step is not None else "final"
        return (f"Policy({c.algorithm.name} on {c.env.id}, seed {c.seed}, {step}; {self.path}; "
                f"obs {self.obs_spec.shape} -> action {self.action_space.shape})")

    def seed(self, seed: int) -> None:
        """Seeds the sampling of stochastic actions."""
        self.agent.generator.manual_seed(seed)

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        """One observation -> one action; a stack of observations [k, ...] -> [k, *action shape]. A pixel policy
        takes a frame stack as its env gives it, or one image (H x W x 3 or 3 x H x W: a fresh episode's stack)."""
        obs = np.asarray(obs, dtype=self.obs_spec.dtype)
        if self.config.env.obs.kind == "pixels":
            try:
                obs = as_stack(obs, self.obs_spec.shape)
            except ValueError as e:
                raise PolicyError(str(e)) from None
        single = obs.ndim == len(self.obs_spec.shape)
        batch = obs.reshape(1 if single else obs.shape[0], *self.obs_spec.shape)
        actions = self._to_env(self.act_unit(batch, deterministic))
        actions = actions.reshape(-1, *self.action_space.shape)
        return actions[0] if single else actions

    def act_unit(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Observations [k, *shape] -> actions in [-1, 1], as the trainer's agent gives them."""
        if self._normalize is not None:
            obs = self._normalize(obs)
        t = torch.as_tensor(obs, device=self.device)
        return self.agent.act(t, deterministic=deterministic).cpu().numpy()

    def sample_unit(self, obs, count: int) -> tuple[np.ndarray, np.ndarray | None]:
        """`count` draws of the policy at one observation: actions [count, *action shape] in [-1, 1] and their
        log-densities [count] (None where the policy has no density)."""
        obs = np.asarray(obs, dtype=self.obs_spec.dtype).reshape(1, *self.obs_spec.shape)
        if self._normalize is not None:
            obs = self._normalize(obs)
        actions, log_prob = self.agent.policy_samples(torch.as_tensor(obs, device=self.device), count)
        return actions[0].cpu().numpy(), None if log_prob is None else log_prob[0].cpu().numpy()

    @property
    def alpha(self) -> float | None:
        """The temperature the policy was trained with (its final value when learned); None without one."""
        alpha = getattr(self.agent, "alpha", None)
        return None if alpha is None else float(alpha)

    def make_env(self, render_size: int | None = None) -> gym.Env:
        """The run's env (its eval settings) with the env's own action bounds, as `act` returns them."""
        return _native(make_run_env(self.config, render_size))


def load_policy(path: str | Path, best: bool = False, device: str | torch.device = "cpu") -> Policy:
    """A run dir (its model.pt; with `best`, its best_model.pt), a model.pt, best_model.pt or checkpoint file."""
    return Policy(load_saved(path, best), device)
