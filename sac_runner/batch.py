"""What the replay buffer hands the agent, and RNG state restore: shared by storage and algorithms."""
from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor  # 1.0 at a true terminal state; 0.0 otherwise, including time-limit truncation


def restore_generator(generator: torch.Generator, state: Tensor, fallback_seed: int) -> None:
    """Restore a generator's state; a state from another device type (a CUDA run resumed on CPU, say)
    cannot be, so the generator is reseeded and the run continues, no longer bit for bit."""
    try:
        generator.set_state(state)
    except RuntimeError:
        log.warning("random-number state saved on another device type: reseeding; the resumed run is not "
                    "bit-identical to an uninterrupted one")
        generator.manual_seed(fallback_seed)
