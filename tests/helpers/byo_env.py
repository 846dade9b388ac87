"""A researcher's own env for tests/test_envs.py: importing this module registers BYOPoint-v0 (Gymnasium's
`module:EnvId` convention); PointEnv is also used unregistered, through env.entry_point."""
import gymnasium as gym
import numpy as np


class PointEnv(gym.Env):
    """A point on a line, pushed by the action (at most `speed` per step); reward -x². The position is
    `state`, so a resumed episode continues where it was."""

    def __init__(self, render_mode=None, speed: float = 0.1):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.speed = speed
        self.state = np.zeros(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-1.0, 1.0, size=1)
        return self.state.copy(), {}

    def step(self, action):
        self.state = np.clip(self.state + self.speed * np.asarray(action, dtype=np.float64), -2.0, 2.0)
        return self.state.copy(), float(-self.state[0] ** 2), False, False, {}


gym.register(id="BYOPoint-v0", entry_point=PointEnv, max_episode_steps=50)
