"""The package's own small envs, registered with Gymnasium when `sac_runner.envs` is imported:

- `sac_runner/MultiGoal-v0`: the 2-D point mass with four goals of Haarnoja et al. 2017 (Section 6.1): position
  s, velocity action a in [-1, 1]^2, s' = s + a; reward -(action_cost |a|^2 + distance_cost min_g |s' - g|),
  plus goal_reward and the end of the episode within goal_radius of a goal; goals at (+-5, 0) and (0, +-5);
  starts near the origin (N(0, init_sigma^2)); 30 steps. From the origin all four goals are equally good, so
  the maximum-entropy policy there is multimodal.
- `sac_runner/SoftBandit-v0`: one step, one state, reward r(a) on [-1, 1]^dim, where the maximum-entropy optimal
  policy is known exactly: pi*(a) = exp((r(a) - V*) / alpha), V* = alpha log integral exp(r(a) / alpha) da
  (`SoftBandit.optimum`). `reward="unimodal"`: r(a) = -sharpness |a - center|^2; `"bimodal"`:
  r(a) = -sharpness min(|a - center|^2, |a + center|^2) (center: that value in every coordinate), two modes of
  equal height.
- `sac_runner/DotToTarget-v0`: a dot to be moved onto a target in a small image, rendered in NumPy: the smallest
  task that needs vision (obs=pixels, network=drq). Both positions lie in [0, 1]^2 (the target drawn anew each
  episode); the action moves the dot by `speed` * a; reward -|dot - target| per step; 20 steps. Its observation is
  the image itself (size x size x 3 uint8: the dot red, the target green), or with image_obs=False the four
  coordinates, with the image as its rgb_array render (the path rendered envs take).

Their state is the array `state`, so exact resume covers them (envs/families/generic.py).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GOALS = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])


class MultiGoal(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, goal_reward: float = 10.0, action_cost: float = 30.0, distance_cost: float = 1.0,
                 init_sigma: float = 0.1, goal_radius: float = 1.0, bound: float = 7.0, render_mode: str | None = None):
        self.goal_reward, self.action_cost, self.distance_cost = goal_reward, action_cost, distance_cost
        self.init_sigma, self.goal_radius, self.bound = init_sigma, goal_radius, bound
        self.goals = GOALS.copy()
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = spaces.Box(-bound, bound, (2,), np.float32)
        self.render_mode = render_mode
        self.state = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = np.clip(self.np_random.normal(0.0, self.init_sigma, 2), -self.bound, self.bound)
        return self.state.astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.state = np.clip(self.state + action, -self.bound, self.bound)
        distance = np.linalg.norm(self.goals - self.state, axis=1)
        at_goal = bool(distance.min() < self.goal_radius)
        reward = -(self.action_cost * float(action @ action) + self.distance_cost * float(distance.min()))
        reward += self.goal_reward if at_goal else 0.0
        return self.state.astype(np.float32), reward, at_goal, False, {"goal": int(distance.argmin()) if at_goal
                                                                       else -1}

    def render(self):
        """A 64x64 top view: goals in green, the point in red."""
        size = 64
        frame = np.full((size, size, 3), 255, dtype=np.uint8)

        def pixel(p):
            return np.clip(((np.asarray(p) + self.bound) / (2 * self.bound) * (size - 1)).round().astype(int), 0,
                           size - 1)

        for g in self.goals:
            x, y = pixel(g)
            frame[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = (0, 160, 0)
        x, y = pixel(self.state)
        frame[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = (200, 0, 0)
        return frame[::-1]


@dataclass(frozen=True)
class Optimum:
    """The soft-optimal policy of a bandit, on a grid: pi* density at `actions` (grid points), V*, the mass of
    each mode, and the grid's cell volume."""
    actions: np.ndarray  # [N, dim]
    density: np.ndarray  # [N]
    value: float
    mode_mass: np.ndarray
    cell: float


class SoftBandit(gym.Env):
    def __init__(self, reward: str = "unimodal", dim: int = 1, center: float = 0.5, sharpness: float = 4.0):
        if reward not in ("unimodal", "bimodal"):
            raise ValueError(f"reward={reward!r}: expected unimodal or bimodal")
        self.kind, self.dim, self.center, self.sharpness = reward, int(dim), float(center), float(sharpness)
        self.action_space = spaces.Box(-1.0, 1.0, (self.dim,), np.float32)
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.state = np.ones(1)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.state.astype(np.float32), {}

    def step(self, action):
        reward = float(self.reward(np.asarray(action, dtype=np.float64)[None])[0])
        return self.state.astype(np.float32), reward, True, False, {}

    def reward(self, actions: np.ndarray) -> np.ndarray:
        """r(a) for actions [N, dim]."""
        c = np.full(self.dim, self.center)
        near = ((actions - c) ** 2).sum(-1)
        if self.kind == "bimodal":
            near = np.minimum(near, ((actions + c) ** 2).sum(-1))
        return -self.sharpness * near

    def mode(self, actions: np.ndarray) -> np.ndarray:
        """Which mode an action lies in: 0 (towards +center) or 1 (towards -center); one mode when unimodal."""
        return (actions.sum(-1) < 0).astype(int) if self.kind == "bimodal" else np.zeros(len(actions), int)

    @property
    def modes(self) -> int:
        return 2 if self.kind == "bimodal" else 1

    def optimum(self, alpha: float, points: int | None = None) -> Optimum:
        """pi* and V* by numerical integration (midpoint rule) on a grid over [-1, 1]^dim (dim <= 2)."""
        if self.dim > 2:
            raise ValueError("the grid oracle integrates over at most 2 action dimensions")
        points = points or (4000 if self.dim == 1 else 400)
        axis = -1.0 + (np.arange(points) + 0.5) * (2.0 / points)
        actions = np.array(list(itertools.product(axis, repeat=self.dim)))
        cell = (2.0 / points) ** self.dim
        logits = self.reward(actions) / alpha
        top = logits.max()
        log_z = top + np.log(np.exp(logits - top).sum() * cell)
        density = np.exp(logits - log_z)
        mass = np.array([(density * cell)[self.mode(actions) == m].sum() for m in range(self.modes)])
        return Optimum(actions, density, float(alpha * log_z), mass, cell)


class DotToTarget(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 32, speed: float = 0.15, image_obs: bool = True, render_mode: str | None = None):
        self.size, self.speed, self.image_obs, self.render_mode = size, speed, image_obs, render_mode
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8) if image_obs else \
            spaces.Box(0.0, 1.0, (4,), np.float32)
        self.state = np.zeros(4)  # dot xy, target xy

    def _obs(self):
        return self.render() if self.image_obs else self.state.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(0.1, 0.9, 4)
        return self._obs(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.state[:2] = np.clip(self.state[:2] + self.speed * a, 0.0, 1.0)
        reward = -float(np.linalg.norm(self.state[:2] - self.state[2:]))
        return self._obs(), reward, False, False, {}

    def render(self) -> np.ndarray:
        """The arena: the target a green square, the dot a red one drawn over it (3 x 3 pixels each)."""
        image = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        for (x, y), channel in ((self.state[2:], 1), (self.state[:2], 0)):
            i, j = (int(round(v * (self.size - 1))) for v in (y, x))
            image[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2] = 0
            image[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, channel] = 255
        return image


def register() -> None:
    for env_id, entry, steps in (("sac_runner/MultiGoal-v0", MultiGoal, 30), ("sac_runner/SoftBandit-v0",
                                                                              SoftBandit, 1),
                                 ("sac_runner/DotToTarget-v0", DotToTarget, 20)):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"{entry.__module__}:{entry.__name__}", max_episode_steps=steps)
