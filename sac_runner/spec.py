"""What an observation is: its shape and dtype, as the env gives it. It flows from the env to the replay buffer,
the encoder, normalization, evaluation and Policy, so none of them assumes flat float vectors."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class ObsSpec(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def of(cls, obs: "ObsSpec | int | tuple") -> "ObsSpec":
        """An ObsSpec as given, or a flat float32 vector of `obs` entries (an int), or float32 of a shape."""
        if isinstance(obs, ObsSpec):
            return obs
        shape = (int(obs),) if isinstance(obs, (int, np.integer)) else tuple(int(s) for s in obs)
        return cls(shape, np.dtype(np.float32))

    @property
    def size(self) -> int:
        """Entries per observation."""
        return math.prod(self.shape)

    @property
    def is_flat_float(self) -> bool:
        return len(self.shape) == 1 and self.dtype == np.float32

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize
