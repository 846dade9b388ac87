"""Replay buffer: preallocated tensors on the training device, observations in their own shape and dtype (uint8
frames stay uint8), sampled with one index gather per field.

Each transition keeps its next observation beside it. For flat state vectors that costs little memory and keeps
sampling to plain gathers; stacked frames (obs=pixels) go to FrameReplay (frames.py), which keeps each frame once."""
from __future__ import annotations

import os

import numpy as np
import torch

from sac_runner.algorithms.batch import Batch
from sac_runner.rng import restore_generator
from sac_runner.spec import ObsSpec
from sac_runner.training.frames import FrameReplay, frame_replay_bytes

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    """A ring of `capacity` transitions (obs, action, reward, next_obs, terminated)."""

    def __init__(self, capacity: int, obs: ObsSpec | int, act_dim: int, device: torch.device | str = "cpu",
                 seed: int = 0):
        self.capacity, self.act_dim = capacity, act_dim
        self.spec = ObsSpec.of(obs)
        self.device = torch.device(device)
        obs_dtype = torch.from_numpy(np.empty(0, dtype=self.spec.dtype)).dtype
        shapes = {"obs": (self.spec.shape, obs_dtype), "action": ((act_dim,), torch.float32),
                  "reward": ((), torch.float32), "next_obs": (self.spec.shape, obs_dtype),
                  "terminated": ((), torch.float32)}
        self.storage = {k: torch.empty((capacity, *shape), dtype=dtype, device=self.device)
                        for k, (shape, dtype) in shapes.items()}
        # on a CPU, NumPy views of the same memory: one row written in place, no tensor ops
        self._host = {k: t.numpy() for k, t in self.storage.items()} if self.device.type == "cpu" else None
        self.pos = 0
        self.size = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, first: np.ndarray | None = None) -> None:
        """Add n transitions (leading dim n): next_obs is the true next state, also at episode ends. (`first`,
        which observations begin an episode, matters to FrameReplay only.)"""
        n = obs.shape[0]
        values = dict(zip(FIELDS, (obs, action, reward, next_obs, terminated)))
        if n == 1 and self._host is not None:
            for k, v in values.items():
                self._host[k][self.pos] = v[0]
        else:
            idx = torch.from_numpy((self.pos + np.arange(n)) % self.capacity).to(self.device)
            for k, v in values.items():
                self.storage[k][idx] = torch.as_tensor(np.asarray(v)).to(self.device, self.storage[k].dtype)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), generator=self.generator, device=self.device)
        return Batch(*(self.storage[k].index_select(0, idx) for k in FIELDS))

    def state_dict(self) -> dict:
        return {"fields": {k: t[: self.size].cpu().clone() for k, t in self.storage.items()},
                "pos": self.pos, "size": self.size, "capacity": self.capacity,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        fields = state["fields"] if "fields" in state else self._split_rows(state["storage"])
        theirs = {k: tuple(t.shape[1:]) for k, t in fields.items()}
        ours = {k: tuple(t.shape[1:]) for k, t in self.storage.items()}
        if int(state["capacity"]) != self.capacity or theirs != ours:
            raise ValueError(f"replay buffer shape differs: checkpoint has capacity {int(state['capacity'])} and "
                             f"fields {theirs}, this run has capacity {self.capacity} and fields {ours}")
        self.size, self.pos = int(state["size"]), int(state["pos"])
        for k, t in fields.items():
            self.storage[k][: self.size].copy_(t)
        restore_generator(self.generator, state["generator"], fallback_seed=self.size)

    def _split_rows(self, rows: torch.Tensor) -> dict:
        """A checkpoint of sac-runner <= 0.1 stored flat float32 rows [obs | action | reward | next_obs | done]."""
        o, a = self.spec.size, self.act_dim
        if rows.shape[1] != 2 * o + a + 2:
            raise ValueError(f"replay buffer shape differs: checkpoint rows of {rows.shape[1]}, this run needs "
                             f"{2 * o + a + 2}")
        n = rows.shape[0]
        return {"obs": rows[:, :o].reshape(n, *self.spec.shape), "action": rows[:, o:o + a],
                "reward": rows[:, o + a], "next_obs": rows[:, o + a + 1:2 * o + a + 1].reshape(n, *self.spec.shape),
                "terminated": rows[:, 2 * o + a + 1]}


def transition_bytes(obs: ObsSpec | int, act_dim: int) -> int:
    """Bytes one transition takes in the buffer."""
    spec = ObsSpec.of(obs)
    return 2 * spec.size * spec.itemsize + 4 * (act_dim + 2)


def required_bytes(capacity: int, obs: ObsSpec | int, act_dim: int, frame_stack: int | None = None) -> int:
    """Bytes the replay of a run takes (frame_stack: stacked frames, kept once each)."""
    if frame_stack:
        return frame_replay_bytes(capacity, ObsSpec.of(obs), act_dim, frame_stack)
    return capacity * transition_bytes(obs, act_dim)


def make_replay(capacity: int, obs: ObsSpec, act_dim: int, device: torch.device, seed: int,
                frame_stack: int | None = None, pad: int = 0) -> ReplayBuffer | FrameReplay:
    """The replay a run keeps: whole transitions, or with frame_stack (obs=pixels) stacked frames."""
    if frame_stack:
        return FrameReplay(capacity, obs, act_dim, frame_stack, pad, device, seed)
    return ReplayBuffer(capacity, obs, act_dim, device, seed)


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
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
