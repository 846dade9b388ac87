"""Model files: model.pt and best_model.pt (the networks and the config, no optimizer or replay state), and any
of the three file kinds (those two and checkpoints) read back for acting and fine-tuning."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sac_runner.errors import CheckpointError, PolicyError
from sac_runner.runs import checkpoint as ckpt
from sac_runner.runs.atomic import atomic_write
from sac_runner.runs.rundir import RunDir

NOT_WEIGHTS = ("config", "obs_dim", "act_dim", "obs_shape", "obs_dtype", "obs_normalizer")


def non_finite_tensors(weights: dict, prefix: str = "") -> list[str]:
    """Names of the tensors in a (nested) weights dict holding NaN or infinity."""
    bad = []
    for name, value in weights.items():
        if isinstance(value, dict):
            bad += non_finite_tensors(value, f"{prefix}{name}.")
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            bad.append(f"{prefix}{name}")
    return bad


def save_model(path: Path, state: dict, kept: str) -> Path:
    """Write a model file atomically; a failed write (a full disk) ends the run in one line naming what is kept
    (`kept`: the checkpoint situation)."""
    try:
        return atomic_write(path, lambda f: torch.save(state, f))
    except Exception as e:
        reason = ckpt.io_failure(e)
        if reason is None:
            raise
        previous = "the previous one is intact" if path.exists() else "no earlier one exists"
        raise CheckpointError(f"could not write {path}: {reason}; {previous}, and {kept}") from e


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
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise PolicyError(f"{path}: no such file or directory (give a run dir, model.pt, best_model.pt or a "
                          "checkpoints/step_*.pt file)")
    run = RunDir(p)
    if best:
        if not run.best_model.is_file():
            raise PolicyError(f"{p} has no {RunDir.BEST_MODEL} (written from the first evaluation after "
                              "learning_starts)")
        return run.best_model
    if run.model.is_file():
        return run.model
    found = ckpt.list_checkpoints(run.checkpoints) or ckpt.list_checkpoints(p)
    if found:
        return found[-1][1]
    if run.best_model.is_file():  # stopped before the end (a non-finite loss, say): only its best model is there
        raise PolicyError(f"{p} has no {RunDir.MODEL} or {RunDir.CHECKPOINTS}/step_*.pt but a {RunDir.BEST_MODEL} "
                          f"(use --best, or give {run.best_model})")
    raise PolicyError(f"{p} holds no {RunDir.MODEL}, {RunDir.BEST_MODEL} or {RunDir.CHECKPOINTS}/step_*.pt: "
                      "is it a sac-run run dir?")


def _first_matrix(weights: dict) -> torch.Tensor | None:
    """The first 2-D weight of the first network (the actor's input layer: [hidden, obs_dim])."""
    for value in weights.values():
        if isinstance(value, dict):
            for k, v in value.items():
                if k.endswith("weight") and getattr(v, "ndim", 0) == 2:
                    return v
    return None


def load_saved(path: str | Path, best: bool = False) -> SavedRun:
    file = resolve_model_file(path, best)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or foreign files
        raise PolicyError(f"{file} could not be read ({type(e).__name__}): it is damaged, truncated or not a "
                          "sac-run model or checkpoint") from None
    if isinstance(state, dict) and "format" in state and "agent" in state:  # a checkpoint
        try:
            ckpt.load_file(file)  # its manifest check, when it has one
        except CheckpointError as e:
            if file.with_suffix(".json").is_file():
                raise PolicyError(str(e)) from None
        nets, step = state["agent"], int(state.get("trainer", {}).get("step", 0))
    else:
        nets, step = state, None
    if not isinstance(nets, dict) or not isinstance(state.get("config"), dict):
        raise PolicyError(f"{file} is not a sac-run model or checkpoint (it lacks the networks or the config)")
    weights = {k: v for k, v in nets.items() if k not in NOT_WEIGHTS}
    bad = non_finite_tensors(weights)
    if bad:
        raise PolicyError(f"{file} holds non-finite values ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
                          "a policy that diverged cannot act; use an earlier checkpoint or best_model.pt")
    first = _first_matrix(weights)
    dims = (state.get("obs_dim", None if first is None else int(first.shape[1])), state.get("act_dim"))
    return SavedRun(path=file, config=state["config"], weights=weights, obs_normalizer=state.get("obs_normalizer"),
                    step=step, dims=dims)


def load_networks(agent, saved: SavedRun, obs_dim: int, act_dim: int, what: str,
                  reset: tuple[str, ...] = ()) -> None:
    """Copy a saved run's networks into `agent` through its load_weights (`reset`: entries left at their start
    values); shapes must fit."""
    saved_obs, saved_act = saved.dims
    if (saved_obs is not None and saved_obs != obs_dim) or (saved_act is not None and saved_act != act_dim):
        raise PolicyError(f"{what}: its policy takes observations of size {saved_obs} and gives actions of size "
                          f"{saved_act} (env {saved.config.get('env', {}).get('id')}), this env has {obs_dim} and "
                          f"{act_dim}")
    if not any(name in saved.weights for name in agent.networks):  # none of this agent's networks: another kind
        raise PolicyError(f"{what} is not a sac-run model or checkpoint of algorithm "
                          f"{saved.config.get('algorithm', {}).get('name')} (it lacks {', '.join(agent.networks)})")
    try:
        agent.load_weights(saved.weights, reset=reset)
    except (RuntimeError, KeyError) as e:
        detail = " ".join(str(e).split())[:300]
        raise PolicyError(f"{what}: its networks do not fit this run's network settings ({detail})") from None
