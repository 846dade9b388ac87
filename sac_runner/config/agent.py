"""The agent a run's config describes: the trainer's, and load_policy's for a saved run."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import torch
from omegaconf import DictConfig, OmegaConf

from sac_runner import algorithms
from sac_runner.spec import ObsSpec
from sac_runner.update.paths import should_compile

log = logging.getLogger(__name__)


def planned_updates(cfg: DictConfig) -> int:
    """Gradient steps a run takes from learning_starts to total_steps (a resumed run counts them all, so it
    makes the same compile choice as it did at the start)."""
    h = cfg.hyperparameters
    per_round = cfg.num_envs * cfg.env.action_repeat * h.get("update_every", 1)
    return max(cfg.total_steps - cfg.learning_starts, 0) // per_round * h.gradient_steps


def plain(node: DictConfig) -> SimpleNamespace:
    """A config group as plain attributes: the agent reads them in its update, where OmegaConf's lookups
    would cost microseconds each."""
    return SimpleNamespace(**OmegaConf.to_container(node, resolve=True))


def compile_choice(cfg: DictConfig, device: torch.device | str) -> tuple[bool, str]:
    """(compile the update?, why) for this run."""
    return should_compile(cfg.compile, cfg.precision, device, planned_updates(cfg))


def make_agent(cfg: DictConfig, obs: ObsSpec | int, act_dim: int, device: torch.device | str = "cpu",
               compile: bool | None = None):
    """The agent of `cfg` for these observations and actions; compile=None decides by cfg.compile (logged)."""
    if compile is None:
        compile, why = compile_choice(cfg, device)
        log.info("%s", why)
    return algorithms.make_agent(obs, act_dim, plain(cfg.network), plain(cfg.hyperparameters), plain(cfg.algorithm),
                                 precision=cfg.precision, compile=compile, update=cfg["update"], device=device,
                                 seed=cfg.seed)


def run_keys(cfg: DictConfig) -> dict:
    """The top-level keys the run's algorithm family adds (its RUN_KEYS), with this run's values."""
    family = algorithms.agent_class(cfg.algorithm.name)
    return {key: cfg.get(key) for key in family.RUN_KEYS}
