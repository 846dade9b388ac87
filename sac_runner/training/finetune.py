"""Fine-tuning: a new run whose networks start from a trained run's (`init_from=<run dir|model file>`)."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from sac_runner.config.agent import run_keys
from sac_runner.errors import PolicyError
from sac_runner.runs.models import load_networks, load_saved, resolve_model_file

log = logging.getLogger(__name__)


def source_file(init_from: str) -> str:
    """What a run records as its `init_from`: the absolute path of the file a run dir stands for (so that
    rerunning the command resumes it: the checkpoint's config and the rerun's agree)."""
    try:
        return str(resolve_model_file(init_from).resolve())
    except PolicyError:  # reported when the weights are loaded (not at all when the run resumes)
        return str(Path(init_from).expanduser().resolve())


def init_from(agent, cfg: DictConfig, obs_normalizer=None) -> Path:
    """Load the networks of `cfg.init_from` into `agent` (the algorithm says which entries start anew:
    fine_tuning_resets), and its observation statistics into `obs_normalizer` (the run's, or None when it does
    not normalize). The replay buffer and optimizers start fresh. Returns the file used."""
    what = f"init_from={cfg.init_from}"
    try:
        saved = load_saved(source_file(cfg.init_from))
    except PolicyError as e:
        raise PolicyError(f"{what}: {e}") from None
    if (saved.obs_normalizer is None) != (obs_normalizer is None):
        was = "normalized" if saved.obs_normalizer is not None else "raw"
        setting = "true" if saved.obs_normalizer is not None else "false"
        raise PolicyError(f"{what}: that policy was trained on {was} observations; set "
                          f"env.normalize_obs={setting} to fine-tune it")
    if obs_normalizer is not None:
        obs_normalizer.load_state_dict(saved.obs_normalizer)  # the statistics the policy's inputs assume
    reset = agent.fine_tuning_resets(run_keys(cfg))
    load_networks(agent, saved, agent.obs_dim, agent.act_dim, what, reset=reset)
    source = saved.path.resolve()
    kept = [name for name in saved.weights if name not in reset]
    log.info("Initialized %s from %s (env %s, step %s)%s", ", ".join(kept), source,
             saved.config.get("env", {}).get("id"), saved.step if saved.step is not None else "final",
             f"; started anew: {', '.join(reset)}" if reset else "")
    return source
