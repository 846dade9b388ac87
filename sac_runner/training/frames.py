"""Replay for stacked image observations (obs=pixels): each frame stored once, stacks rebuilt by index.

An observation is [C * k, H, W] uint8: the last k frames, C channels each. Of each transition only the newest frame
of next_obs is new (the episode's first frame is stored once at its start), so the buffer keeps one frame per
transition, C x H x W in a ring, where storing obs and next_obs stacks would keep 2k. A transition records the
number of its next frame and of its episode's first frame; its stacks are the k frames before (obs) and up to
(next_obs) that frame, repeating the episode's first frame where the episode is younger than the stack, as the
env's frame stack does after a reset.

The frame ring holds 1/16 more frames than `capacity` transitions, for the episodes' first frames. Where episodes
are shorter than 16 agent steps, the oldest transitions are dropped when their frames are overwritten, so the
buffer then holds somewhat fewer than `capacity`.

Sampling gathers the stacks and applies DrQ's random shift: each stack padded by `pad` pixels (edge replicated)
and cropped back at a random offset, obs and next_obs independently. Of the forms measured, the cheapest: the
stacks padded once, each crop a view of them, copied out in rows of W pixels (frames are kept as C planes of
H x W, so a stack is [C * k, H, W] as gathered, with no transposing copy)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sac_runner.algorithms.batch import Batch
from sac_runner.rng import restore_generator
from sac_runner.spec import ObsSpec

EXTRA_FRAMES = 16  # the frame ring holds capacity + capacity // EXTRA_FRAMES frames


def frame_capacity(capacity: int, frame_stack: int) -> int:
    return capacity + capacity // EXTRA_FRAMES + frame_stack + 1


def frame_replay_bytes(capacity: int, obs: ObsSpec, act_dim: int, frame_stack: int) -> int:
    """Bytes the buffer takes: frames, and per transition two frame numbers, action, reward and terminal flag."""
    c, h, w = obs.shape
    return frame_capacity(capacity, frame_stack) * h * w * (c // frame_stack) + capacity * (16 + 4 * act_dim + 8)


def replicate_pad(x: Tensor, p: int) -> Tensor:
    """[batch, C, H, W] padded by p pixels on each side, edges replicated (any dtype: uint8 too)."""
    n, c, h, w = x.shape
    out = torch.empty((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype, device=x.device)
    out[:, :, p:p + h, p:p + w] = x
    out[:, :, :p, p:p + w] = x[:, :, :1]
    out[:, :, p + h:, p:p + w] = x[:, :, -1:]
    out[:, :, :, :p] = out[:, :, :, p:p + 1]
    out[:, :, :, p + w:] = out[:, :, :, p + w - 1:p + w]
    return out


class FrameReplay:
    """A ring of `capacity` transitions whose observations are stacks of `frame_stack` frames."""

    def __init__(self, capacity: int, obs: ObsSpec, act_dim: int, frame_stack: int, pad: int = 0,
                 device: torch.device | str = "cpu", seed: int = 0):
        c, h, w = obs.shape
        if obs.dtype != np.uint8 or c % frame_stack:
            raise ValueError(f"stacked frames need uint8 observations [C * {frame_stack}, H, W], not {obs}")
        self.capacity, self.act_dim, self.k, self.pad = capacity, act_dim, frame_stack, pad
        self.spec = obs
        self.device = torch.device(device)
        self.channels = c // frame_stack
        self.num_frames = frame_capacity(capacity, frame_stack)
        self.frames = torch.empty((self.num_frames, self.channels, h, w), dtype=torch.uint8, device=self.device)
        self.next_frame = torch.empty(capacity, dtype=torch.int64, device=self.device)  # frame number of next_obs
        self.first_frame = torch.empty(capacity, dtype=torch.int64, device=self.device)  # its episode's first
        self.action = torch.empty((capacity, act_dim), dtype=torch.float32, device=self.device)
        self.reward = torch.empty(capacity, dtype=torch.float32, device=self.device)
        self.terminated = torch.empty(capacity, dtype=torch.float32, device=self.device)
        self.frames_written = 0  # frame numbers count every frame ever written; frame n lies at n % num_frames
        self.episode_first = -1  # frame number of the current episode's first frame (-1: none yet)
        self.pos = 0  # where the next transition goes
        self.size = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    # ---- adding ----

    def _write_frame(self, stack: np.ndarray) -> int:
        """Store the newest frame of a [C * k, H, W] stack; returns its frame number."""
        n = self.frames_written
        self.frames[n % self.num_frames] = torch.from_numpy(np.ascontiguousarray(stack[-self.channels:])).to(
            self.device)
        self.frames_written += 1
        self._drop_overwritten()
        return n

    def _drop_overwritten(self) -> None:
        """Transitions whose oldest frame has just been overwritten leave the buffer (oldest first)."""
        oldest_kept = self.frames_written - self.num_frames
        while self.size:
            tail = (self.pos - self.size) % self.capacity
            oldest = max(int(self.next_frame[tail]) - self.k, int(self.first_frame[tail]))
            if oldest >= oldest_kept:
                return
            self.size -= 1

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, first: np.ndarray | None = None) -> None:
        """Add transitions from one env (leading dim 1); `first`: obs is its episode's first observation."""
        if obs.shape[0] != 1:
            raise ValueError("stacked-frame replay takes one env's transitions (num_envs=1)")
        if self.episode_first < 0 or (first is not None and bool(first[0])):
            self.episode_first = self._write_frame(obs[0])
        nxt = self._write_frame(next_obs[0])
        p = self.pos
        self.next_frame[p], self.first_frame[p] = nxt, self.episode_first
        self.action[p] = torch.as_tensor(action[0])
        self.reward[p] = float(reward[0])
        self.terminated[p] = float(terminated[0])
        self.pos = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    # ---- sampling ----

    def sample(self, batch_size: int) -> Batch:
        t = (self.pos - self.size + torch.randint(0, self.size, (batch_size,), generator=self.generator,
                                                  device=self.device)) % self.capacity
        nxt, start = self.next_frame[t], self.first_frame[t]
        offsets = torch.arange(-self.k, 1, device=self.device)  # frames k before the next frame, up to it
        numbers = torch.maximum(nxt[:, None] + offsets, start[:, None]) % self.num_frames  # [batch, k + 1]
        obs = self._gather(numbers[:, :-1])
        next_obs = self._gather(numbers[:, 1:])
        return Batch(obs, self.action[t], self.reward[t], next_obs, self.terminated[t])

    def _gather(self, numbers: Tensor) -> Tensor:
        """Stacks [batch, C * k, H, W] of these frames, each randomly shifted by up to `pad` pixels when pad > 0."""
        n, (h, w) = numbers.shape[0], self.frames.shape[2:]
        x = self.frames.index_select(0, numbers.reshape(-1)).view(n, -1, h, w)
        if not self.pad:
            return x
        p = self.pad
        shift = torch.randint(0, 2 * p + 1, (2, n), generator=self.generator, device=self.device)
        padded = replicate_pad(x, p)
        # every crop of the padded stacks as a view: windows[b, dy, dx] = padded[b, :, dy:dy + h, dx:dx + w]
        sb, sc, sh, sw = padded.stride()
        windows = padded.as_strided((n, 2 * p + 1, 2 * p + 1, x.shape[1], h, w), (sb, sh, sw, sc, sh, sw))
        return windows[torch.arange(n, device=self.device), shift[0], shift[1]]

    # ---- state ----

    def state_dict(self) -> dict:
        live = min(self.frames_written, self.num_frames)
        return {"frames": self.frames[:live].cpu().clone(), "next_frame": self.next_frame.cpu().clone(),
                "first_frame": self.first_frame.cpu().clone(), "action": self.action.cpu().clone(),
                "reward": self.reward.cpu().clone(), "terminated": self.terminated.cpu().clone(),
                "frames_written": self.frames_written, "episode_first": self.episode_first, "pos": self.pos,
                "size": self.size, "capacity": self.capacity, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "frames" not in state:
            raise ValueError("replay buffer kind differs: the checkpoint holds a replay of whole observations, this "
                             "run stores stacked frames")
        theirs, ours = (int(state["capacity"]), tuple(state["frames"].shape[1:]), tuple(state["action"].shape[1:])), \
            (self.capacity, tuple(self.frames.shape[1:]), (self.act_dim,))
        if theirs != ours:
            raise ValueError(f"replay buffer shape differs: checkpoint has (capacity, frame, action) {theirs}, this "
                             f"run has {ours}")
        frames = state["frames"]
        self.frames[: frames.shape[0]].copy_(frames)
        for name in ("next_frame", "first_frame", "action", "reward", "terminated"):
            getattr(self, name).copy_(state[name])
        self.frames_written, self.episode_first = int(state["frames_written"]), int(state["episode_first"])
        self.pos, self.size = int(state["pos"]), int(state["size"])
        restore_generator(self.generator, state["generator"], fallback_seed=self.size)
