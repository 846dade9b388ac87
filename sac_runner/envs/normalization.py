"""Observation normalization: running mean and variance of the training observations."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class ObsNormalizer:
    """(obs - mean) / sqrt(var + eps), clipped to ±clip (as Stable-Baselines3's VecNormalize).

    `update` folds a batch of raw observations into the statistics (Chan et al.'s parallel formula, float64);
    calling the normalizer applies them and changes nothing, so evaluation sees frozen statistics. The trainer
    updates it from the observations the policy acts on during training. Save with `state_dict()`, load with
    `ObsNormalizer.from_state_dict(state)` (model.pt's "obs_normalizer")."""

    def __init__(self, shape: int | tuple[int, ...], clip: float = 10.0, eps: float = 1e-8):
        """shape: of one observation (an int: a flat vector's size)."""
        self.count = 0
        self.mean = np.zeros(shape)
        self.var = np.ones(shape)
        self.clip, self.eps = float(clip), float(eps)
        self._cached: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def update(self, obs: np.ndarray) -> None:
        x = np.asarray(obs, dtype=np.float64).reshape(-1, *self.mean.shape)
        n = x.shape[0]
        mean, var = x.mean(axis=0), x.var(axis=0)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.var = m2 / total
        self.count = total
        self._cached.clear()

    def _tensors(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._cached:
            mean = torch.as_tensor(self.mean, dtype=torch.float32, device=device)
            inv_std = torch.as_tensor(1.0 / np.sqrt(self.var + self.eps), dtype=torch.float32, device=device)
            self._cached[device] = (mean, inv_std)
        return self._cached[device]

    def normalize(self, obs: Tensor) -> Tensor:
        """Float32 observations [..., *shape] -> normalized (a new tensor)."""
        mean, inv_std = self._tensors(obs.device)
        return ((obs - mean) * inv_std).clamp_(-self.clip, self.clip)

    def __call__(self, obs):
        """Normalize a tensor or an array (float32 out); the statistics stay as they are."""
        if isinstance(obs, Tensor):
            return self.normalize(obs)
        return self.normalize(torch.as_tensor(np.asarray(obs, dtype=np.float32))).numpy()

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": torch.from_numpy(self.mean.copy()),
                "var": torch.from_numpy(self.var.copy()), "clip": self.clip, "eps": self.eps}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.mean = state["mean"].numpy().astype(np.float64, copy=True)
        self.var = state["var"].numpy().astype(np.float64, copy=True)
        self.clip, self.eps = float(state["clip"]), float(state["eps"])
        self._cached.clear()

    @classmethod
    def from_state_dict(cls, state: dict) -> "ObsNormalizer":
        normalizer = cls(tuple(state["mean"].shape))
        normalizer.load_state_dict(state)
        return normalizer
