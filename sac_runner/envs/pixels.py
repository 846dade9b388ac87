"""Pixel observations (obs=pixels): the env's rendered frames, or its own image observations, as uint8 images of
size x size, stacked channels first: the agent sees [3 * frame_stack, size, size]."""
from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np

from sac_runner.errors import ConfigError


def is_image_space(space: gym.Space) -> bool:
    """A uint8 Box of H x W x C (C = 1, 3 or 4): observations that already are images."""
    return (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[-1] in (1, 3, 4))


def resize_nearest(frame: np.ndarray, size: int) -> np.ndarray:
    """An H x W x C frame as size x size x C, by nearest neighbour (the identity at that size)."""
    h, w = frame.shape[:2]
    if h == size and w == size:
        return frame
    rows = (np.arange(size) * h // size).clip(0, h - 1)
    cols = (np.arange(size) * w // size).clip(0, w - 1)
    return frame[rows][:, cols]


class PixelObservation(gym.ObservationWrapper):
    """The observation replaced by an RGB frame of size x size (uint8, H x W x 3): the env's own image observation
    where it gives one, else its rgb_array render (the env must have been made with render_mode="rgb_array")."""

    def __init__(self, env: gym.Env, size: int, env_id: str):
        super().__init__(env)
        self.size, self.env_id = size, env_id
        self.own_images = is_image_space(env.observation_space)
        if not self.own_images and env.render_mode != "rgb_array":
            raise ConfigError(f"obs=pixels but env.id={env_id!r} was made without render_mode='rgb_array' "
                              f"(it has {env.render_mode!r}); use obs=state")
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, obs) -> np.ndarray:
        if self.own_images:
            frame = np.asarray(obs)
        else:
            try:
                frame = self.env.render()
            except Exception as e:  # a missing OpenGL backend or package raises several types
                reason = " ".join(str(e).split()) or type(e).__name__
                raise ConfigError(f"obs=pixels but env.id={self.env_id!r} cannot render here ({reason}); install "
                                  "what it needs (MuJoCo: MUJOCO_GL=egl) or use obs=state") from None
            if not isinstance(frame, np.ndarray) or frame.ndim != 3:
                raise ConfigError(f"obs=pixels but env.id={self.env_id!r} renders no RGB frame (got "
                                  f"{type(frame).__name__}); use obs=state")
        frame = frame[:, :, :3] if frame.shape[-1] >= 3 else np.repeat(frame[:, :, :1], 3, axis=2)
        return np.ascontiguousarray(resize_nearest(frame.astype(np.uint8, copy=False), self.size))


class FrameStack(gym.Wrapper):
    """The last `k` frames, oldest first, channels first: [3k, H, W] uint8. A reset repeats its frame k times."""

    def __init__(self, env: gym.Env, k: int):
        super().__init__(env)
        self.k = k
        h, w, c = env.observation_space.shape
        self.channels = c
        self.frames: deque[np.ndarray] = deque(maxlen=k)
        self.observation_space = gym.spaces.Box(0, 255, (c * k, h, w), np.uint8)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        chw = obs.transpose(2, 0, 1)
        self.frames.extend([chw] * self.k)
        return self._stack(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(obs.transpose(2, 0, 1))
        return self._stack(), reward, terminated, truncated, info

    def _stack(self) -> np.ndarray:
        return np.concatenate(self.frames, axis=0)

    def set_stack(self, stack: np.ndarray) -> None:
        """Continue from a stack this wrapper gave (exact resume)."""
        c = self.channels
        self.frames.extend(np.ascontiguousarray(stack[i * c:(i + 1) * c]) for i in range(self.k))


def pixel_env(env: gym.Env, size: int, frame_stack: int, env_id: str) -> gym.Env:
    return FrameStack(PixelObservation(env, size, env_id), frame_stack)


def restore_stack(env: gym.Env, obs: np.ndarray) -> None:
    """Give an env's frame stack (if it has one) the observation a checkpoint holds."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, FrameStack):
            env.set_stack(obs)
            return
        env = env.env


def as_stack(obs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An observation for a policy that takes stacks [3k, H, W]: a stack (or a batch of them) as it is; one image,
    H x W x C or 3 x H x W, as a fresh episode's stack (the image repeated k times)."""
    obs = np.asarray(obs)
    c, h, w = shape
    if obs.shape[-3:] == tuple(shape):
        return obs
    if obs.ndim == 3 and obs.shape[:2] == (h, w) and obs.shape[2] in (1, 3, 4):
        obs = obs[:, :, :3].transpose(2, 0, 1) if obs.shape[2] >= 3 else np.repeat(obs.transpose(2, 0, 1), 3, 0)
    if obs.ndim == 3 and obs.shape == (3, h, w):
        return np.concatenate([obs] * (c // 3))
    raise ValueError(f"an observation of shape {obs.shape}: this policy takes stacks {tuple(shape)} or single "
                     f"images ({h}, {w}, 3) or (3, {h}, {w})")
