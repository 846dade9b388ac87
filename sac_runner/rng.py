"""Random-number state to and from checkpoints: torch generators, NumPy generators (new and legacy), and the
process-wide Python, NumPy and torch states. Arrays become tensors, so checkpoints load with weights_only."""
from __future__ import annotations

import logging
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def restore_generator(generator: torch.Generator, state: torch.Tensor, fallback_seed: int) -> None:
    """Restore a torch generator's state; a state from another device type (a CUDA run resumed on CPU, say)
    cannot be, so the generator is reseeded and the run continues, no longer bit for bit."""
    try:
        generator.set_state(state)
    except RuntimeError:
        log.warning("random-number state saved on another device type: reseeding; the resumed run is not "
                    "bit-identical to an uninterrupted one")
        generator.manual_seed(fallback_seed)


def _legacy_to_tensors(state: dict) -> dict:
    """NumPy's legacy state (get_state(legacy=False)) holds an array; checkpoints hold tensors."""
    return {**state, "state": {**state["state"], "key": torch.from_numpy(state["state"]["key"].astype(np.int64))}}


def _legacy_from_tensors(state: dict) -> dict:
    return {**state, "state": {**state["state"], "key": state["state"]["key"].numpy().astype(np.uint32)}}


def numpy_state(rng) -> dict:
    """A NumPy Generator's or a legacy RandomState's state (dm_control keeps the latter)."""
    if isinstance(rng, np.random.RandomState):
        return _legacy_to_tensors(rng.get_state(legacy=False))
    return rng.bit_generator.state


def set_numpy_state(rng, state: dict) -> None:
    if isinstance(rng, np.random.RandomState):
        rng.set_state(_legacy_from_tensors(state))
    else:
        rng.bit_generator.state = state


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def global_state() -> dict:
    """Python's, NumPy's global and torch's CPU random states."""
    return {"python": random.getstate(), "numpy_global": numpy_state(np.random.mtrand._rand),
            "torch": torch.get_rng_state()}


def set_global_state(state: dict) -> None:
    random.setstate(state["python"])
    set_numpy_state(np.random.mtrand._rand, state["numpy_global"])
    torch.set_rng_state(state["torch"])
