"""How close a trained policy is to the maximum-entropy optimum, on an env whose optimum is known exactly
(envs/toy.SoftBandit): pi*(a) = exp((r(a) - V*) / alpha), V* = alpha log integral exp(r(a) / alpha) da.

For any policy pi, its soft value J(pi) = E_pi[r] - alpha E_pi[log pi] and its KL to the optimum are tied:
KL(pi || pi*) = E_pi[log pi - (r - V*) / alpha] = (V* - J(pi)) / alpha. With a density (SAC's tanh-Gaussian) both
come from samples and their log pi; without one (Soft Q-learning's sampler) the KL is estimated from a
histogram of the samples against pi*'s mass per bin, and J from the identity.

`best_tanh_gaussian` finds, by direct optimization, the best soft value a single tanh-Gaussian reaches: on a
bimodal reward it is below V* (the representational limit of SAC's policy class).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sac_runner.envs.toy import Optimum, SoftBandit


@dataclass
class SoftOptimality:
    alpha: float
    optimal_value: float  # V*
    value: float  # J(pi)
    kl: float  # KL(pi || pi*)
    kl_from: str  # "log-density" or "histogram"
    mode_mass: list[float]  # the policy's mass on each mode
    optimal_mode_mass: list[float]
    samples: int

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        modes = ", ".join(f"{m:.3f}" for m in self.mode_mass)
        optimal = ", ".join(f"{m:.3f}" for m in self.optimal_mode_mass)
        return [f"alpha {self.alpha:.4g}; {self.samples} samples of the policy",
                f"soft value J(pi) {self.value:.4f} against V* {self.optimal_value:.4f} "
                f"(gap {self.optimal_value - self.value:.4f})",
                f"KL(pi || pi*) {self.kl:.4f} (from the {self.kl_from})",
                f"mass per mode: policy [{modes}], pi* [{optimal}]"]


def bandit_of(env) -> SoftBandit:
    bandit = env.unwrapped
    if not isinstance(bandit, SoftBandit):
        raise ValueError(f"the soft-optimality oracle needs a SoftBandit env, not {type(bandit).__name__}")
    return bandit


def soft_optimality(bandit: SoftBandit, alpha: float, actions: np.ndarray, log_prob: np.ndarray | None,
                    bins: int | None = None) -> SoftOptimality:
    """The oracle's comparison for samples of a policy (actions [N, dim] in [-1, 1]; log_prob [N] or None)."""
    optimum = bandit.optimum(alpha)
    reward = bandit.reward(actions)
    if log_prob is not None:
        value = float(np.mean(reward - alpha * log_prob))
        kl, source = (optimum.value - value) / alpha, "log-density"
    else:
        kl, source = histogram_kl(actions, optimum, bins or (100 if bandit.dim == 1 else 30)), "histogram"
        value = optimum.value - alpha * kl
    modes = bandit.mode(actions)
    mass = [float(np.mean(modes == m)) for m in range(bandit.modes)]
    return SoftOptimality(alpha, optimum.value, value, kl, source, mass, optimum.mode_mass.tolist(), len(actions))


def histogram_kl(actions: np.ndarray, optimum: Optimum, bins: int) -> float:
    """KL(pi || pi*) with pi a histogram of the samples and pi* integrated over the same bins."""
    dim = actions.shape[1]
    edges = [np.linspace(-1.0, 1.0, bins + 1)] * dim
    p, _ = np.histogramdd(np.clip(actions, -1.0, 1.0), bins=edges)
    q, _ = np.histogramdd(optimum.actions, bins=edges, weights=optimum.density * optimum.cell)
    p = p.ravel() / p.sum()
    q = q.ravel() / q.sum()
    seen = p > 0
    return float(np.sum(p[seen] * (np.log(p[seen]) - np.log(np.maximum(q[seen], 1e-300)))))


def best_tanh_gaussian(bandit: SoftBandit, alpha: float, steps: int = 1500, starts: int = 8, seed: int = 0
                       ) -> float:
    """The highest soft value a tanh-Gaussian policy reaches on a 1-D bandit, by gradient ascent on
    J(mu, sigma) = E_u[r(tanh u) + alpha log(1 - tanh(u)^2)] + alpha H(N(mu, sigma^2)), the expectation by
    quadrature on a standardized grid (exact to the grid), from several starting points."""
    if bandit.dim != 1:
        raise ValueError("best_tanh_gaussian covers 1-D bandits")
    z = torch.linspace(-6.0, 6.0, 2401, dtype=torch.float64)
    w = torch.exp(-0.5 * z ** 2)
    w = w / w.sum()
    c, k = bandit.center, bandit.sharpness
    g = torch.Generator().manual_seed(seed)
    mu = (torch.rand(starts, 1, generator=g, dtype=torch.float64) * 3 - 1.5).requires_grad_(True)
    log_sigma = torch.full((starts, 1), -1.0, dtype=torch.float64, requires_grad=True)
    optim = torch.optim.Adam([mu, log_sigma], lr=0.02)

    def value() -> torch.Tensor:
        u = mu + log_sigma.exp() * z
        a = torch.tanh(u)
        near = (a - c) ** 2
        if bandit.kind == "bimodal":
            near = torch.minimum(near, (a + c) ** 2)
        log_det = 2.0 * (math.log(2.0) - u - torch.nn.functional.softplus(-2.0 * u))
        entropy = log_sigma.squeeze(-1) + 0.5 * math.log(2 * math.pi * math.e)
        return ((-k * near + alpha * log_det) * w).sum(-1) + alpha * entropy

    for _ in range(steps):
        optim.zero_grad()
        (-value().sum()).backward()
        optim.step()
    with torch.no_grad():
        return float(value().max())
