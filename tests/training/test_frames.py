"""The frame replay of obs=pixels: each frame stored once, stacks rebuilt across episode ends, the random shift,
memory, state."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from sac_runner.envs.pixels import FrameStack
from sac_runner.spec import ObsSpec
from sac_runner.training.frames import FrameReplay, frame_replay_bytes, replicate_pad
from sac_runner.training.replay import required_bytes


class CountingFrames(gym.Env):
    """Frames whose pixels all hold the frame's number (mod 251): a stack says which frames it holds. Episodes of
    random length (1 to 6 steps), so that stacks cross episode starts often."""
    observation_space = gym.spaces.Box(0, 255, (4, 5, 3), np.uint8)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.count = 0

    def _frame(self):
        self.count += 1
        return np.full((4, 5, 3), self.count % 251, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(1, 7))
        return self._frame(), {}

    def step(self, action):
        self.left -= 1
        return self._frame(), 0.0, False, self.left == 0, {}


def fill(replay: FrameReplay, steps: int, k: int, seed: int = 0, env: gym.Env | None = None
         ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Transitions of the frame-stacked env (CountingFrames by default) into the replay; each one's action is its
    index. Returns the true (obs, next_obs) stacks, as the env's frame stack gave them, by index."""
    env = FrameStack(env or CountingFrames(), k)
    obs, _ = env.reset(seed=seed)
    first, truth = True, {}
    for i in range(steps):
        next_obs, _, term, trunc, _ = env.step(np.zeros(1))
        replay.add(obs[None], np.array([[float(i)]], np.float32), np.zeros(1, np.float32), next_obs[None],
                   np.array([float(term)], np.float32), np.array([first]))
        truth[i] = (obs, next_obs)
        first = term or trunc
        obs = env.reset()[0] if first else next_obs
    return truth


def sampled(replay: FrameReplay, n: int):
    b = replay.sample(n)
    return [(int(a), o.numpy(), no.numpy()) for a, o, no in zip(b.action[:, 0], b.obs, b.next_obs)]


@pytest.mark.parametrize("k", [1, 3])
def test_stacks_are_rebuilt_exactly_across_episode_ends(k):
    replay = FrameReplay(1000, ObsSpec((3 * k, 4, 5), np.dtype(np.uint8)), 1, k, pad=0)
    truth = fill(replay, 300, k)
    assert len(replay) == 300
    for i, obs, next_obs in sampled(replay, 500):
        assert np.array_equal(obs, truth[i][0]) and np.array_equal(next_obs, truth[i][1]), i


def test_a_full_ring_keeps_the_newest_transitions_and_their_stacks_whole():
    k = 3
    replay = FrameReplay(64, ObsSpec((3 * k, 4, 5), np.dtype(np.uint8)), 1, k, pad=0)
    truth = fill(replay, 1000, k)
    # episodes of 1-6 steps add a first frame each: the ring drops the oldest transitions to keep their frames
    assert 40 <= len(replay) <= 64
    seen = {i for i, _, _ in sampled(replay, 2000)}
    assert min(seen) >= 1000 - len(replay) and max(seen) == 999
    for i, obs, next_obs in sampled(replay, 500):
        assert np.array_equal(obs, truth[i][0]) and np.array_equal(next_obs, truth[i][1]), i


def test_memory_is_one_frame_per_transition():
    spec = ObsSpec((9, 84, 84), np.dtype(np.uint8))
    # 100k transitions of 84x84x3 frames with stack 3: within 2.5 GB (the budget DrQ-style runs have)
    assert required_bytes(100_000, spec, 6, frame_stack=3) <= 2.5e9
    assert required_bytes(100_000, spec, 6, frame_stack=3) < required_bytes(100_000, spec, 6) / 5
    replay = FrameReplay(1000, spec, 6, 3)
    held = sum(t.numel() * t.element_size() for t in (replay.frames, replay.next_frame, replay.first_frame,
                                                       replay.action, replay.reward, replay.terminated))
    assert held == frame_replay_bytes(1000, spec, 6, 3)
    assert replay.frames.shape[0] < 1.07 * 1000 and replay.frames.shape[1:] == (3, 84, 84)


class RandomFrames(CountingFrames):
    """Random 16 x 16 frames: a shifted crop differs from the frame."""
    observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)

    def _frame(self):
        return self.np_random.integers(0, 256, (16, 16, 3), dtype=np.uint8)


def test_the_random_shift_is_a_crop_of_the_edge_padded_stack_and_repeats_under_a_seed():
    k, pad = 2, 2
    spec = ObsSpec((3 * k, 16, 16), np.dtype(np.uint8))
    replays = [FrameReplay(100, spec, 1, k, pad=pad, seed=7) for _ in range(2)]
    truth = [fill(replay, 99, k, env=RandomFrames()) for replay in replays][0]
    a, b = replays[0].sample(64), replays[1].sample(64)
    assert a.obs.shape == (64, 3 * k, 16, 16) and a.obs.dtype == torch.uint8
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # same seed, same batch
    shifts = set()
    for i, obs, next_obs in zip(a.action[:, 0].int().tolist(), a.obs, a.next_obs):
        for stack, true in ((obs, truth[i][0]), (next_obs, truth[i][1])):
            # one of the (2 pad + 1)^2 crops of the edge-padded stack
            padded = replicate_pad(torch.from_numpy(true)[None], pad)[0]
            match = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                     if torch.equal(padded[:, dy:dy + 16, dx:dx + 16], stack)]
            assert match, i
            shifts.add(match[0])
    assert len(shifts) > 5  # the shifts vary


def test_replicate_pad_matches_torch_on_floats():
    x = torch.rand(2, 3, 5, 6)
    assert torch.equal(replicate_pad(x, 2), torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"))


def test_state_round_trip_continues_the_same_samples():
    k = 3
    spec = ObsSpec((3 * k, 4, 5), np.dtype(np.uint8))
    replay = FrameReplay(64, spec, 1, k, pad=1, seed=3)
    fill(replay, 200, k)
    copy = FrameReplay(64, spec, 1, k, pad=1, seed=99)
    copy.load_state_dict(replay.state_dict())
    a, b = replay.sample(32), copy.sample(32)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="replay buffer shape differs"):
        FrameReplay(32, spec, 1, k).load_state_dict(replay.state_dict())
