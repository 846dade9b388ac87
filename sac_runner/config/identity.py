"""What an experiment is: every config key except the run settings listed here.

The one list drives sweep job dir names, the resume check, the W&B group and name, and sac-report's grouping.
Rule for new keys: a key is an experiment key unless it is listed in RUN_SETTINGS (or lies under one). List it
only if changing it cannot change what is learned: where output goes, how often it is recorded, how long to
run, how fast it runs. So `env.kwargs`, `init_from` and update options are experiment keys."""
from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

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
# W&B limits: group 128 characters, tags and job_type 64.
GROUP_LIMIT, TAG_LIMIT = 128, 64


def is_run_setting(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RUN_SETTINGS)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings (dicts or DictConfigs) -> {dotted key: leaf}; an empty mapping is a leaf."""
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


def config_differences(saved: Any, current: Any, defaults: Mapping[str, Any] = ()) -> list[str]:
    """Experiment keys (seed included) that differ between two configs: a value changed, a key added or removed
    (nested keys too: env.kwargs.g). A key only the current config has, at its value in `defaults` (flattened:
    the schema's defaults), is one added to the schema since the saved config was written, not a change."""
    a, b = _leaves(experiment_config(saved)), _leaves(experiment_config(current))
    defaults = dict(defaults)
    missing = object()
    diffs = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, missing), b.get(key, missing)
        if old is missing and key in defaults and canonical(defaults[key]) == canonical(new):
            continue
        if old is missing or new is missing or canonical(old) != canonical(new):
            was = "absent" if old is missing else repr(old)
            now = "absent" if new is missing else repr(new)
            diffs.append(f"{key} ({was} in the checkpoint, {now} now)")
    return diffs


def _leaves(flat: dict[str, Any]) -> dict[str, Any]:
    """A flattened config without its empty mappings (an empty env.kwargs holds no key)."""
    return {k: v for k, v in flat.items() if not (isinstance(v, Mapping) and not v)}


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
