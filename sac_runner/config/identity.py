"""What an experiment is: every config key except the run settings listed here.

Also: the names derived from it (W&B group and run name, the composed defaults a run differs from).

The one list drives sweep job dir names, the resume check, the W&B group and name, and sac-report's grouping.
Rule for new keys: a key is an experiment key unless it is listed in RUN_SETTINGS (or lies under one). List it
only if changing it cannot change what is learned: where output goes, how often it is recorded, how long to
run, how fast it runs. So `env.kwargs`, `init_from` and update options are experiment keys."""
from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from typing import Any, Mapping

RUN_SETTINGS: tuple[str, ...] = (
    "logger",
    "progress",
    "threads",
    "device",
    "compile",
    "update",  # which code computes the gradients (autograd or the fused kernels): same update, like compile
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "resume",
    "run_dir",
    # how long and how often to evaluate: a longer run extends the same experiment
    "total_steps",
    "env.total_steps",
    "eval_every",
    "env.eval_every",
    "env.presets",  # an env option's budget table (which budgets apply is seen in total_steps, learning_starts)
    "eval_episodes",
    # a sweep preset's name (+experiment=...); the keys it sets count one by one
    "experiment",
    "hydra",
)
SEED = "seed"
ALWAYS_SHOWN = ("env.id", "algorithm.name")
# W&B limits: group 128 characters, tags and job_type 64.
GROUP_LIMIT, TAG_LIMIT = 128, 64


def is_run_setting(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RUN_SETTINGS)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings (dicts or DictConfigs) -> {dotted key: leaf}; an empty mapping is a leaf."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):  # resolved; Hydra's own node (return_hydra_config) left out
        cfg = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
               for k in cfg.keys() if k != "hydra"}
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def experiment_config(config: Any, *, seed: bool = True) -> dict[str, Any]:
    """The flattened config without run settings (and without the seed when seed=False)."""
    flat = config if _is_flat(config) else flatten(config)
    return {k: v for k, v in flat.items() if not is_run_setting(k) and (seed or k != SEED)}


def _is_flat(config: Any) -> bool:
    return isinstance(config, dict) and not any(isinstance(v, Mapping) and v for v in config.values())


def canonical(v: Any) -> Any:
    """Hashable, value-based form of a config value (1 == 1.0, nan == nan, lists by value)."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else ("num", str(f))
    if isinstance(v, (list, tuple)):
        return ("list", tuple(canonical(x) for x in v))
    if isinstance(v, Mapping):
        return ("dict", tuple(sorted((str(k), canonical(x)) for k, x in v.items())))
    if v is None or isinstance(v, str):
        return v
    return ("other", str(v))


def config_differences(saved: Any, current: Any) -> list[str]:
    """Experiment keys (seed included) whose values differ between two configs. Keys only one side has
    (written by another version of sac-runner) are not compared."""
    a, b = experiment_config(saved), experiment_config(current)
    return [f"{key} ({a[key]!r} in the checkpoint, {b[key]!r} now)"
            for key in sorted(set(a) & set(b)) if canonical(a[key]) != canonical(b[key])]


# ---- the composed defaults ----

@lru_cache(maxsize=8)
def _options(group: str, field: str) -> dict[Any, str]:
    """{value of `field`: option name} over conf/<group>/*.yaml."""
    from importlib.resources import files

    import yaml

    out = {}
    for entry in sorted(files("sac_runner.conf").joinpath(group).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            if isinstance(data, dict) and field in data:
                out.setdefault(data[field], entry.name[:-5])
    return out


@lru_cache(maxsize=32)
def _composed(overrides: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from sac_runner.config.schema import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside sac-run: its own config search path
        cfg = compose("config", list(overrides))
    else:
        with initialize_config_module("sac_runner.conf", version_base="1.3"):
            cfg = compose("config", list(overrides))
    return tuple(flatten(cfg).items())


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


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "x".join(format_value(x) for x in v) if v else "[]"
    if isinstance(v, Mapping):
        return ",".join(f"{k}:{format_value(x)}" for k, x in v.items()) if v else "{}"
    return str(v)


def short_items(values: Mapping[str, Any]) -> list[str]:
    """key=value with the last part of each dotted key, the full key where two would read the same."""
    last = [k.rsplit(".", 1)[-1] for k in values]
    return [f"{k.rsplit('.', 1)[-1] if last.count(k.rsplit('.', 1)[-1]) == 1 else k}={format_value(v)}"
            for k, v in values.items()]


def shorten(text: str, limit: int) -> str:
    """text if it fits, else the words that fit and a stable hash of the whole text."""
    if len(text) <= limit:
        return text
    digest = " #" + hashlib.sha1(text.encode()).hexdigest()[:8]
    words, kept = text.split(" "), ""
    for w in words:
        if len(kept) + len(w) + 1 + len(" …") + len(digest) > limit:
            break
        kept = f"{kept} {w}" if kept else w
    return (kept + " …" + digest)[:limit] if kept else (text[:limit - len(digest)] + digest)


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
