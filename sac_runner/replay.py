"""Replay buffer: one preallocated tensor on the training device, sampled with one index gather."""
from __future__ import annotations

import numpy as np
import torch

from .batch import Batch, restore_generator

BYTES_PER_FLOAT = 4


class ReplayBuffer:
    """Rows are [obs | action | reward | next_obs | terminated], float32, in a ring of `capacity` rows."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu",
                 seed: int = 0):
        self.capacity, self.obs_dim, self.act_dim = capacity, obs_dim, act_dim
        self.device = torch.device(device)
        self.row_size = row_size(obs_dim, act_dim)
        self.storage = torch.empty((capacity, self.row_size), dtype=torch.float32, device=self.device)
        self.pos = 0
        self.size = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        o, a = obs_dim, act_dim
        self._slices = (slice(0, o), slice(o, o + a), o + a, slice(o + a + 1, 2 * o + a + 1), 2 * o + a + 1)
        self._host_rows = self.storage.numpy() if self.device.type == "cpu" else None  # shares the memory

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        """Add n transitions (leading dim n): next_obs is the true next state, also at episode ends."""
        n = obs.shape[0]
        if n == 1 and self._host_rows is not None:  # one row on the CPU: written in place, no tensor ops
            row, (o, a, r, no, t) = self._host_rows[self.pos], self._slices
            row[o], row[a], row[r], row[no], row[t] = obs[0], action[0], reward[0], next_obs[0], terminated[0]
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
            return
        rows = np.concatenate(
            [obs, action, reward.reshape(n, 1), next_obs, terminated.reshape(n, 1)], axis=1, dtype=np.float32
        )
        idx = (self.pos + np.arange(n)) % self.capacity
        if n == 1:
            self.storage[self.pos].copy_(torch.from_numpy(rows[0]), non_blocking=True)
        else:
            self.storage[torch.from_numpy(idx).to(self.device)] = torch.from_numpy(rows).to(self.device)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), generator=self.generator, device=self.device)
        rows = self.storage.index_select(0, idx)
        obs, act, rew, next_obs, term = self._slices
        return Batch(rows[:, obs], rows[:, act], rows[:, rew], rows[:, next_obs], rows[:, term])

    def state_dict(self) -> dict:
        return {
            "storage": self.storage[: self.size].cpu().clone(),
            "pos": self.pos,
            "size": self.size,
            "capacity": self.capacity,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity or state["storage"].shape[1] != self.row_size:
            raise ValueError(
                f"replay buffer shape differs: checkpoint has capacity {int(state['capacity'])} and rows of "
                f"{state['storage'].shape[1]}, this run has capacity {self.capacity} and rows of {self.row_size}"
            )
        self.size, self.pos = int(state["size"]), int(state["pos"])
        self.storage[: self.size].copy_(state["storage"])
        restore_generator(self.generator, state["generator"], fallback_seed=self.size)


def row_size(obs_dim: int, act_dim: int) -> int:
    return 2 * obs_dim + act_dim + 2


def required_bytes(capacity: int, obs_dim: int, act_dim: int) -> int:
    return capacity * row_size(obs_dim, act_dim) * BYTES_PER_FLOAT


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, else free physical pages; None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
