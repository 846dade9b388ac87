"""Soft Q-learning (Haarnoja et al. 2017, "Reinforcement Learning with Deep Energy-Based Policies") for continuous
actions: the other way to learn the maximum-entropy policy pi(a|s) = exp((Q(s, a) - V(s)) / alpha).

- One Q-network and its Polyak-averaged target (hyperparameters.tau, target_update_interval).
- The soft value V(s') = alpha log integral exp(Q'(s', a') / alpha) da' by importance sampling with
  `value_particles` uniform actions on [-1, 1]^d (losses.soft_value_uniform); y = r + gamma (1 - done) V(s').
- A sampling network u = f(s, xi), xi ~ N(0, I), a = tanh(u), trained by amortized Stein variational gradient
  descent towards p(u|s) proportional to exp(Q(s, tanh u) / alpha) |det d tanh(u) / du| (the tanh correction):
  of `svgd_particles` samples per state, a `svgd_fixed_fraction` are the fixed set x_j (where the energy's
  gradient and the kernel are taken) and the rest the updated set y_i, which move along
  D(y_i) = mean_j [k(x_j, y_i) grad E(x_j) + alpha grad_{x_j} k(x_j, y_i)] (losses.stein_direction) with an RBF
  kernel whose bandwidth is `kernel_bandwidth` or, null, the median heuristic per state (losses.rbf_kernel).
  The sampler's loss is -mean_i D(y_i) . f(s, xi_i), D held constant: its gradient is -E[D df/dphi].

The temperature is alpha: Q is in reward units and the policy is exp(Q / alpha). The original code states it as
a reward scale c with alpha = 1; scaling rewards by c is the same as alpha = 1 / c on the unscaled rewards
(env.reward_scale exists too). The deterministic action (evaluation) is tanh(f(s, 0)), the sampler's middle; the
policy itself is the sampler with noise. Autograd update path only; a compile covers the critic's loss (its
K-particle target pass is most of the cost), the Stein step runs eagerly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from sac_runner.algorithms.base import MISSING, Agent, flat_with_optimizer, mlp_parameters
from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.losses import (
    critic_loss,
    rbf_kernel,
    soft_value_uniform,
    stein_direction,
    tanh_log_det,
    td_target,
)
from sac_runner.errors import require
from sac_runner.nn.networks import CriticEnsemble, SamplingNetwork
from sac_runner.update.optim import FlatParameters


@dataclass
class SQLConfig:
    """conf/algorithm/sql.yaml holds the values."""
    name: str = MISSING
    alpha: float = MISSING  # the temperature (1 / reward scale)
    value_particles: int = MISSING  # uniform actions per next state for the soft value
    svgd_particles: int = MISSING  # sampler draws per state in the Stein step
    svgd_fixed_fraction: float = MISSING  # the share of them in the fixed set
    kernel_bandwidth: Optional[float] = None  # RBF bandwidth h; null: the median heuristic


class SQL(Agent):
    FAMILY = "sql"
    NAMES = ("sql",)
    Config = SQLConfig
    METRICS = ("loss/critic", "loss/sampler", "q_mean", "value_mean", "stein_norm")

    @classmethod
    def validate(cls, algorithm: Any, cfg: Any) -> None:
        a = algorithm
        require(a.alpha > 0, "algorithm.alpha", "a temperature > 0", a.alpha)
        require(a.value_particles >= 2, "algorithm.value_particles", "an integer >= 2 (uniform actions per state)",
                a.value_particles)
        require(a.svgd_particles >= 2, "algorithm.svgd_particles",
                "an integer >= 2 (at least one fixed and one updated particle)", a.svgd_particles)
        require(0 < a.svgd_fixed_fraction < 1, "algorithm.svgd_fixed_fraction", "a fraction in (0, 1)",
                a.svgd_fixed_fraction)
        fixed = cls.fixed_particles(a)
        require(0 < fixed < a.svgd_particles, "algorithm.svgd_fixed_fraction",
                f"a fraction leaving both sets non-empty among svgd_particles={a.svgd_particles} "
                f"(it gives {fixed} fixed)", a.svgd_fixed_fraction)
        require(a.kernel_bandwidth is None or a.kernel_bandwidth > 0, "algorithm.kernel_bandwidth",
                "null (the median heuristic) or a bandwidth > 0", a.kernel_bandwidth)

    @staticmethod
    def fixed_particles(algorithm: Any) -> int:
        return int(round(algorithm.svgd_particles * algorithm.svgd_fixed_fraction))

    @classmethod
    def memory_bytes(cls, obs_dim: int, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any) -> int:
        """Sampler and Q with gradients, Adam's moments and the target, and the activations of the particle
        passes (value particles through the target; Stein particles through sampler and Q, forward and
        backward)."""
        hidden = list(network.hidden_sizes)
        sampler = mlp_parameters(obs_dim + act_dim, hidden, act_dim)
        critic = mlp_parameters(obs_dim + act_dim, hidden, 1)
        rows = hyperparameters.batch_size * (1 + algorithm.value_particles + 3 * algorithm.svgd_particles)
        return 4 * (4 * sampler + 5 * critic + 2 * rows * sum(hidden))

    def __init__(self, obs, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any, *,
                 precision: str = "fp32", compile: bool = False, update: str = "auto",
                 device: torch.device | str = "cpu", seed: int = 0):
        super().__init__(obs, act_dim, network, hyperparameters, algorithm, precision=precision, update=update,
                         device=device, seed=seed)
        n = network
        self.actor = SamplingNetwork(self.obs_dim, act_dim, n.hidden_sizes, n.activation).to(self.device)
        self.critic = CriticEnsemble(self.obs_dim, act_dim, n.hidden_sizes, n.activation, num_q=1).to(self.device)
        self.critic_target = self.target_of(self.critic)
        self.actor_params, self.actor_optim = flat_with_optimizer(list(self.actor.parameters()), hyperparameters,
                                                                  False)
        self.critic_params, self.critic_optim = flat_with_optimizer(self.critic_tensors(self.critic),
                                                                    hyperparameters, False)
        self.target_params = FlatParameters(self.critic_target.param_list(), grads=False)
        self.networks = self.with_encoder({
            "actor": (self.actor, self.actor_params), "critic": (self.critic, self.critic_params),
            "critic_target": (self.critic_target, self.target_params)})
        self.optimizers = {"actor_optim": self.actor_optim, "critic_optim": self.critic_optim}
        self.polyak_pairs = [(self.target_params, self.critic_params)]
        self.fixed = self.fixed_particles(algorithm)
        self._objectives(compile, "_critic_objective")

    # ---- acting ----

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        obs = self.encoder(obs)
        shape = (obs.shape[0], self.act_dim)
        noise = torch.zeros(shape, device=obs.device) if deterministic else \
            torch.randn(shape, generator=self.generator, device=obs.device)
        return torch.tanh(self.actor(obs, noise))

    @property
    def alpha(self) -> Tensor:
        return torch.tensor(float(self.algorithm.alpha))

    # ---- learning ----

    def update(self, batch: Batch) -> dict[str, Tensor]:
        with torch.no_grad():
            n, d = batch.action.shape
            a = self.algorithm
            uniform = torch.rand(n, a.value_particles, d, generator=self.generator, device=self.device) * 2 - 1
            xi = torch.randn(n, a.svgd_particles, d, generator=self.generator, device=self.device)
            self.critic_optim.advance()
            self.actor_optim.advance()
            polyak = (self.num_updates + 1) % self.hp.target_update_interval == 0
            return self._counted(lambda: self._update(batch, uniform, xi, polyak))

    def _update(self, b: Batch, uniform: Tensor, xi: Tensor, polyak: bool) -> dict[str, Tensor]:
        b = self.encoded(b)
        loss_q, q_mean, value_mean = self._gradient_step(self.critic_params, self.critic_optim,
                                                         self._critic_objective, b, uniform)
        loss_sampler, stein_norm = self._gradient_step(self.actor_params, self.actor_optim, self._sampler_objective,
                                                       b.obs.detach(), xi, inputs=list(self.actor.parameters()))
        if polyak:
            self.polyak()
        return {"loss/critic": loss_q.detach(), "loss/sampler": loss_sampler.detach(), "q_mean": q_mean,
                "value_mean": value_mean, "stein_norm": stein_norm}

    def _critic_objective_eager(self, b: Batch, uniform: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """J_Q against y = r + gamma (1 - done) V'(s'), V' by importance sampling over uniform actions."""
        n, k, d = uniform.shape
        with torch.no_grad():
            next_obs = b.next_obs.unsqueeze(1).expand(-1, k, -1).reshape(n * k, -1)
            next_q = self.critic_target(next_obs, uniform.reshape(n * k, d)).view(n, k)
            value = soft_value_uniform(next_q, self.algorithm.alpha, d)
            target = td_target(b.reward, b.terminated, value, self.hp.gamma)
        q = self.critic(b.obs, b.action)
        return critic_loss(q, target), q.detach().mean(), value.mean()

    def _sampler_objective(self, obs: Tensor, xi: Tensor) -> tuple[Tensor, Tensor]:
        """The amortized Stein step: the surrogate whose gradient is -E[D(y_i) df/dphi], and |D| for the log."""
        n, m, d = xi.shape
        alpha = self.algorithm.alpha
        j = self.fixed
        with torch.no_grad():  # the fixed set takes no gradient: only the updated set's pass is backpropagated
            fixed = self.actor(obs.unsqueeze(1).expand(-1, j, -1), xi[:, :j])  # [n, j, d], before the tanh
        fixed.requires_grad_(True)
        updated = self.actor(obs.unsqueeze(1).expand(-1, m - j, -1), xi[:, j:])
        q = self.critic(obs.unsqueeze(1).expand(-1, j, -1).reshape(n * j, -1),
                        torch.tanh(fixed).reshape(n * j, d)).view(n, j)
        energy = q + alpha * tanh_log_det(fixed)  # alpha log p(u|s) + const
        (grad_energy,) = torch.autograd.grad(energy.sum(), fixed)
        kappa, grad_kappa = rbf_kernel(fixed.detach(), updated.detach(), self.algorithm.kernel_bandwidth)
        direction = stein_direction(kappa, grad_kappa, grad_energy, alpha).detach()
        loss = -(direction * updated).sum(-1).mean()
        return loss, direction.norm(dim=-1).mean()
