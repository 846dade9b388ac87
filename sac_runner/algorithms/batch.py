"""What the replay buffer hands the agent."""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class Batch(NamedTuple):
    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor  # 1.0 at a true terminal state; 0.0 otherwise, including time-limit truncation
