"""Names derived from the experiment: the W&B group (the configuration without its seed), the run name (the group
and the seed), and the composed defaults a run differs from."""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml

from sac_runner.config.compose import compose_config
from sac_runner.config.identity import (
    GROUP_LIMIT,
    SEED,
    TAG_LIMIT,
    canonical,
    experiment_config,
    flatten,
    format_value,
    short_items,
    shorten,
)

ALWAYS_SHOWN = ("env.id", "algorithm.name")


@lru_cache(maxsize=8)
def _options(group: str, field: str) -> dict[Any, str]:
    """{value of `field`: option name} over conf/<group>/*.yaml."""
    out = {}
    for entry in sorted(files("sac_runner.conf").joinpath(group).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            if isinstance(data, dict) and field in data:
                out.setdefault(data[field], entry.name[:-5])
    return out


@lru_cache(maxsize=32)
def _composed(overrides: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    return tuple(flatten(compose_config(list(overrides))).items())


def default_config(env_id: str, algorithm: str) -> dict[str, Any]:
    """What conf/ composes for this env and algorithm with no other override (flattened). An env id no option
    names is set on the default option (its budgets follow the id); an unknown algorithm keeps the default."""
    env_option = _options("env", "id").get(env_id)
    alg_option = _options("algorithm", "name").get(algorithm)
    overrides = [f"env={env_option}"] if env_option else []
    overrides.append(f'env.id="{env_id}"')
    if alg_option:
        overrides.append(f"algorithm={alg_option}")
    return dict(_composed(tuple(overrides)))


def differences_from_defaults(config: Any) -> dict[str, Any]:
    """Experiment keys (seed, env id and algorithm name aside) whose values differ from the composed defaults
    for the same env and algorithm, in key order."""
    flat = experiment_config(config, seed=False)
    defaults = experiment_config(default_config(str(flat.get("env.id")), str(flat.get("algorithm.name"))), seed=False)
    missing = object()
    return {k: flat[k] for k in sorted(flat)
            if k not in ALWAYS_SHOWN and canonical(defaults.get(k, missing)) != canonical(flat[k])}


def configuration_name(config: Any) -> str:
    """Env id, algorithm name and every experiment key that differs from the defaults, seed aside."""
    flat = experiment_config(config, seed=False)
    head = [format_value(flat.get(k)) for k in ALWAYS_SHOWN]
    return " ".join(head + short_items(differences_from_defaults(flat)))


def run_identity(cfg: Any) -> tuple[str, str, list[str]]:
    """(W&B name, group, tags): the group is the configuration without the seed, the name adds the seed, so the
    seeds of one configuration, and only those, share a group. logger.group / logger.name given by the user win."""
    flat = flatten(cfg)
    text = configuration_name(flat)
    seed = f"seed={flat.get(SEED)}"
    group = flat.get("logger.group") or shorten(text, GROUP_LIMIT)
    name = flat.get("logger.name") or f"{shorten(text, GROUP_LIMIT - len(seed) - 1)} {seed}"
    tags = [format_value(flat.get(k)) for k in ALWAYS_SHOWN] + [seed, *(flat.get("logger.tags") or [])]
    return name, group, list(dict.fromkeys(shorten(t, TAG_LIMIT) for t in tags))
