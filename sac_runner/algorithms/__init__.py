"""The algorithm registry. A family is one module in this package defining an Agent subclass with `NAMES` (the
`algorithm.name` values it runs, one per conf/algorithm/*.yaml), `Config` (its schema), its validation, update
capabilities, metrics and fine-tuning rules (algorithms/base.py lists them). Nothing outside this package names an
algorithm: the trainer, config validation, tracking, fine-tuning and policy loading ask here."""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import Any

import torch

from sac_runner.algorithms.base import Agent

NOT_FAMILIES = ("base", "batch", "losses", "temperature")  # the package's shared modules


@lru_cache(maxsize=1)
def _families() -> dict[str, type]:
    """{family name: agent class}, from every module of this package that defines one."""

    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in NOT_FAMILIES:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Agent) and value.NAMES and \
                    value.__module__ == module.__name__:
                found[value.FAMILY] = value
    return found


def families() -> dict[str, type]:
    return dict(_families())


def names() -> tuple[str, ...]:
    """Every algorithm.name a run may give."""
    return tuple(n for cls in _families().values() for n in cls.NAMES)


def agent_class(name: str) -> type:
    """The agent class that runs algorithm.name=`name`; KeyError for an unknown name."""
    for cls in _families().values():
        if name in cls.NAMES:
            return cls
    raise KeyError(name)


def make_agent(obs, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any, *, precision: str = "fp32",
               compile: bool = False, update: str = "auto", device: torch.device | str = "cpu", seed: int = 0):
    """The agent for `algorithm.name`; `obs`: an ObsSpec (or a flat vector's size); the groups: plain objects
    with the config's attributes."""
    return agent_class(algorithm.name)(obs, act_dim, network, hyperparameters, algorithm, precision=precision,
                                       compile=compile, update=update, device=device, seed=seed)
