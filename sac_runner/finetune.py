"""Fine-tuning: a new run whose networks (and α) start from a trained run's (`init_from=<run dir|model file>`)."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from .policy import PolicyError, load_networks, load_saved, resolve_model_file

log = logging.getLogger(__name__)


def source_file(init_from: str) -> str:
    """What a run records as its `init_from`: the absolute path of the file a run dir stands for (so that
    rerunning the command resumes it: the checkpoint's config and the rerun's agree)."""
    try:
        return str(resolve_model_file(init_from).resolve())
    except PolicyError:  # reported when the weights are loaded (not at all when the run resumes)
        return str(Path(init_from).expanduser().resolve())


def init_from(agent, cfg: DictConfig, obs_dim: int, act_dim: int, obs_normalizer=None) -> Path:
    """Load the actor, critics, target critics and (unless `init_reset_alpha`, or with a fixed α) log α of
    `cfg.init_from` into `agent`, and its observation statistics into `obs_normalizer` (the run's, or None when
    it does not normalize). The replay buffer and optimizers start fresh. Returns the file used."""
    what = f"init_from={cfg.init_from}"
    try:
        saved = load_saved(source_file(cfg.init_from))
    except PolicyError as e:
        raise PolicyError(f"{what}: {e}") from None
    if (saved.obs_normalizer is None) != (obs_normalizer is None):
        was = "normalized" if saved.obs_normalizer is not None else "raw"
        raise PolicyError(f"{what}: that policy was trained on {was} observations; set "
                          f"env.normalize_obs={'true' if saved.obs_normalizer is not None else 'false'} to fine-tune it")
    if obs_normalizer is not None:
        obs_normalizer.load_state_dict(saved.obs_normalizer)  # the statistics the policy's inputs assume
    keep_alpha = cfg.algorithm.get("learn_alpha", False) and not cfg.get("init_reset_alpha", False)
    load_networks(agent, saved, obs_dim, act_dim, what, alpha=keep_alpha)
    source = saved.path.resolve()
    log.info("Networks%s initialized from %s (env %s, step %s)", " and alpha" if keep_alpha else "", source,
             saved.config.get("env", {}).get("id"), saved.step if saved.step is not None else "final")
    return source
