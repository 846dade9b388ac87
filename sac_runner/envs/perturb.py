"""Perturbed evaluation envs: action and observation noise, and MuJoCo model changes (masses, friction, gear).

Model changes are applied after each reset and undone before the next one and on close: the original arrays
are kept and copied back, so a perturbed env returns exactly to the unperturbed model."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import gymnasium as gym
import numpy as np

from sac_runner.envs.families import family_of
from sac_runner.errors import ConfigError

# scale name -> the MuJoCo model arrays it multiplies (mass scales inertia too: a uniform change of density)
MODEL_ARRAYS = {
    "mass_scale": ("body_mass", "body_inertia"),
    "friction_scale": ("geom_friction",),
    "gear_scale": ("actuator_gear",),
}


@dataclass(frozen=True)
class Perturbation:
    action_noise: float = 0.0  # std of Gaussian noise added to each action, in the env's action units
    obs_noise: float = 0.0  # std of Gaussian noise added to each observation, in its units
    mass_scale: float = 1.0
    friction_scale: float = 1.0
    gear_scale: float = 1.0

    def changes(self) -> dict[str, float]:
        """The settings that differ from an unperturbed env."""
        return {k: v for k, v in asdict(self).items() if v != getattr(Perturbation, k)}

    def model_scales(self) -> dict[str, float]:
        return {k: v for k, v in self.changes().items() if k in MODEL_ARRAYS}


NAMES = tuple(f.name for f in fields(Perturbation))


class PerturbedEnv(gym.Wrapper):
    """`env` (with its own action bounds) under a Perturbation. Noise is drawn from a generator seeded by the
    reset seed, so an episode from a given seed sees the same noise every time."""

    def __init__(self, env: gym.Env, perturbation: Perturbation, env_id: str = ""):
        super().__init__(env)
        self.perturbation = p = perturbation
        self._rng = np.random.default_rng(0)
        self._originals: dict[str, np.ndarray] = {}
        self._model = family_of(env).model(env)
        if p.model_scales():
            model = self._model
            if model is None:
                raise ConfigError(f"{', '.join(p.model_scales())} changes a MuJoCo model; {env_id or 'this env'} "
                                  "is not a MuJoCo env (action and observation noise work on any env)")
            for name in p.model_scales():
                for array in MODEL_ARRAYS[name]:
                    self._originals[array] = np.array(getattr(model, array), copy=True)
        space = env.action_space
        self._low, self._high = space.low, space.high

    def restore(self) -> None:
        """Put the model's original arrays back, bit for bit."""
        for array, original in self._originals.items():
            getattr(self._model, array)[...] = original

    def _apply(self) -> None:
        model = self._model
        for name, scale in self.perturbation.model_scales().items():
            for array in MODEL_ARRAYS[name]:
                getattr(model, array)[...] = self._originals[array] * scale

    def _noisy_obs(self, obs):
        sigma = self.perturbation.obs_noise
        if sigma == 0:
            return obs
        obs = np.asarray(obs)
        noisy = obs + sigma * self._rng.standard_normal(obs.shape)
        if np.issubdtype(obs.dtype, np.integer):  # images: pixel values rounded and kept in range (no wrap-around)
            limits = np.iinfo(obs.dtype)
            noisy = np.clip(np.rint(noisy), limits.min, limits.max)
        return noisy.astype(obs.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.restore()
        obs, info = self.env.reset(seed=seed, options=options)
        if self._originals:
            self._apply()
        if seed is not None:
            self._rng = np.random.default_rng([seed, 1_000_003])
        return self._noisy_obs(obs), info

    def step(self, action):
        sigma = self.perturbation.action_noise
        if sigma != 0:
            action = np.asarray(action)
            action = np.clip(action + sigma * self._rng.standard_normal(action.shape), self._low,
                             self._high).astype(action.dtype)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._noisy_obs(obs), reward, terminated, truncated, info

    def close(self) -> None:
        self.restore()
        super().close()


def parse_levels(flag: str, text: str) -> list[float]:
    """'0.5,1,2' -> [0.5, 1.0, 2.0], checked for the perturbation's range."""
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag}={text!r} is not allowed: expected numbers separated by commas, e.g. 0.5,1,2") \
            from None
    scale = flag.endswith("scale")
    bad = [x for x in levels if not np.isfinite(x) or (x <= 0 if scale else x < 0)]
    if not levels or bad:
        allowed = "scales > 0" if scale else "noise levels >= 0"
        raise ConfigError(f"{flag}={text!r} is not allowed: expected {allowed}, separated by commas")
    return levels
