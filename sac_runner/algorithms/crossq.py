"""CrossQ (Bhatt et al. 2024, "CrossQ: Batch Normalization in Deep Reinforcement Learning for Greater Sample
Efficiency and Simplicity"): SAC without target networks.

- The critics batch-renormalize their input and every hidden layer (nn/batch_renorm.py); so does the actor
  (actor_batch_norm).
- One joint forward pass of the critics over [(s, a); (s', a')] (a' ~ pi(.|s')): the batch statistics are those
  of the mixture, so that s' is in distribution for the normalization. Q(s', a') is held constant in the loss:
  y = r + gamma * (1 - done) * (min_j Q_j(s', a') - alpha * log pi(a'|s')) (losses.soft_q_target).
- The policy and the temperature step every `policy_delay` critic updates, through the critics in eval mode
  (running statistics); a' for the target comes from the actor in eval mode.
- Adam with beta1 = 0.5 and lr 1e-3 (the paper's; conf/algorithm/crossq.yaml), and wider critics
  (critic_width; the paper's 2048, maintained ports 1024 or 256).

Autograd update path only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sac_runner.algorithms.base import MISSING, Agent, flat_with_optimizer, mlp_parameters
from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.losses import actor_loss, alpha_loss, critic_loss, soft_q_target
from sac_runner.algorithms.temperature import LearnedTemperature, TemperatureConfig
from sac_runner.errors import require
from sac_runner.nn.networks import Actor, CriticEnsemble


@dataclass
class CrossQConfig(TemperatureConfig):
    """conf/algorithm/crossq.yaml holds the values."""
    policy_delay: int = MISSING  # critic updates per actor (and temperature) update
    critic_width: int = MISSING  # units of each of the critics' hidden layers (as many as network.hidden_sizes)
    actor_batch_norm: bool = MISSING  # batch renormalization in the actor too
    lr: float = MISSING  # the optimizer's, through hyperparameters.lr (which wins when given)
    adam_beta1: float = MISSING  # likewise, through hyperparameters.adam_beta1
    renorm_momentum: float = MISSING  # running statistics move this fraction towards each batch's
    renorm_warmup: int = MISSING  # training passes of plain batch norm before renormalization (r, d) starts
    renorm_r_max: float = MISSING
    renorm_d_max: float = MISSING


class CrossQ(LearnedTemperature, Agent):
    FAMILY = "crossq"
    NAMES = ("crossq",)
    Config = CrossQConfig
    METRICS = ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q_mean")
    PROGRESS = {"alpha": "alpha"}

    @classmethod
    def validate(cls, algorithm: Any, cfg: Any) -> None:
        super().validate(algorithm, cfg)
        a = algorithm
        require(a.policy_delay >= 1, "algorithm.policy_delay", "an integer >= 1", a.policy_delay)
        require(a.critic_width >= 1, "algorithm.critic_width", "an integer >= 1 (units per critic hidden layer)",
                a.critic_width)
        require(0 < a.renorm_momentum <= 1, "algorithm.renorm_momentum", "a value in (0, 1]", a.renorm_momentum)
        require(a.renorm_warmup >= 0, "algorithm.renorm_warmup", "an integer >= 0 (training passes)",
                a.renorm_warmup)
        require(a.renorm_r_max >= 1, "algorithm.renorm_r_max", "a value >= 1", a.renorm_r_max)
        require(a.renorm_d_max >= 0, "algorithm.renorm_d_max", "a value >= 0", a.renorm_d_max)
        require(not cfg.network.layer_norm, "network.layer_norm",
                "false with algorithm=crossq (its networks are batch-renormalized)", cfg.network.layer_norm)

    @staticmethod
    def critic_sizes(network: Any, algorithm: Any) -> list[int]:
        return [int(algorithm.critic_width)] * len(network.hidden_sizes)

    @classmethod
    def memory_bytes(cls, obs_dim: int, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any) -> int:
        """Actor and two critics with gradients and Adam's moments, and the activations of the joint pass
        (twice the batch) forward and backward, normalized and not."""
        hidden, critic_hidden = list(network.hidden_sizes), cls.critic_sizes(network, algorithm)
        actor = mlp_parameters(obs_dim, hidden, 2 * act_dim)
        critics = 2 * mlp_parameters(obs_dim + act_dim, critic_hidden, 1)
        activations = 2 * hyperparameters.batch_size * (2 * sum(hidden) + 2 * 2 * 2 * sum(critic_hidden))
        return 4 * (4 * actor + 4 * critics + 2 * activations)

    def __init__(self, obs, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any, *,
                 precision: str = "fp32", compile: bool = False, update: str = "auto",
                 device: torch.device | str = "cpu", seed: int = 0):
        super().__init__(obs, act_dim, network, hyperparameters, algorithm, precision=precision, update=update,
                         device=device, seed=seed)
        n, a = network, algorithm
        renorm = dict(momentum=a.renorm_momentum, warmup=a.renorm_warmup, r_max=a.renorm_r_max,
                      d_max=a.renorm_d_max)
        self.actor = Actor(self.obs_dim, act_dim, n.hidden_sizes, n.activation, n.log_std_min, n.log_std_max,
                           renorm=renorm if a.actor_batch_norm else None).to(self.device)
        self.critic = CriticEnsemble(self.obs_dim, act_dim, self.critic_sizes(n, a), n.activation,
                                     renorm=renorm).to(self.device)
        self.actor.eval()  # acting and the target's a' use running statistics; the actor loss trains
        self._init_temperature(a, act_dim, self.device)
        self._actor_tensors = [*self.actor.parameters(), *([self.log_alpha] if a.learn_alpha else [])]
        self.critic_params, self.critic_optim = flat_with_optimizer(self.critic_tensors(self.critic), hyperparameters,
                                                                    False)
        self.actor_params, self.actor_optim = flat_with_optimizer(self._actor_tensors, hyperparameters, False)
        self.networks = self.with_encoder({"actor": (self.actor, self.actor_params),
                                           "critic": (self.critic, self.critic_params)})
        self.optimizers = {"actor_optim": self.actor_optim, "critic_optim": self.critic_optim}
        self._last = {k: torch.zeros((), device=self.device) for k in ("loss/actor", "loss/alpha", "entropy")}
        self._objectives(compile, "_critic_objective", "_actor_objective")

    # ---- learning ----

    def actor_steps_now(self) -> bool:
        """Whether the coming update moves the actor and the temperature (every policy_delay-th)."""
        return (self.num_updates + 1) % self.algorithm.policy_delay == 0

    def update(self, batch: Batch) -> dict[str, Tensor]:
        with torch.no_grad():
            # noise drawn here, outside a compiled update: next_obs's first, then obs's
            n, act_dim = batch.action.shape
            eps = torch.cat([torch.randn(n, act_dim, generator=self.generator, device=self.device)
                             for _ in range(2)])
            actor_step = self.actor_steps_now()
            self.critic_optim.advance()
            if actor_step:
                self.actor_optim.advance()
            return self._counted(lambda: self._update(batch, eps, actor_step))

    def _update(self, b: Batch, eps: Tensor, actor_step: bool) -> dict[str, Tensor]:
        b = self.encoded(b)
        n = b.obs.shape[0]
        alpha = self.log_alpha.detach().exp()
        loss_q, q_mean = self._gradient_step(self.critic_params, self.critic_optim, self._critic_objective, b,
                                             eps[:n], alpha)
        if actor_step:
            _, loss_pi, loss_alpha, log_prob = self._gradient_step(
                self.actor_params, self.actor_optim, self._actor_objective, b.obs.detach(), eps[n:], alpha,
                self.log_alpha, inputs=self._actor_tensors)
            self._last = {"loss/actor": loss_pi.detach(), "loss/alpha": loss_alpha.detach(),
                          "entropy": -log_prob.mean()}
        return {"loss/critic": loss_q.detach(), **self._last, "alpha": alpha, "q_mean": q_mean}

    def _critic_objective_eager(self, b: Batch, next_eps: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        """J_Q from one pass over [(s, a); (s', a')], the target held constant."""
        n = b.obs.shape[0]
        with torch.no_grad():
            next_pi = self.actor.sample_with(b.next_obs, next_eps)  # eval mode: running statistics
        self.critic.train()
        q_both = self.critic(torch.cat([b.obs, b.next_obs]), torch.cat([b.action, next_pi.action]))
        q, next_q = q_both[:, :n], q_both[:, n:].detach()
        target = soft_q_target(b.reward, b.terminated, next_q.amin(0), next_pi.log_prob, alpha, self.hp.gamma)
        return critic_loss(q, target), q.detach().mean()

    def _actor_objective_eager(self, obs: Tensor, eps: Tensor, alpha: Tensor, log_alpha: Tensor
                               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """J_pi through the critics in eval mode (the actor in training mode), plus J(alpha) when learned."""
        self.actor.train()
        self.critic.eval()
        pi = self.actor.sample_with(obs, eps)
        q = self.critic(obs, pi.action).amin(0)
        self.actor.eval()
        self.critic.train()
        loss_pi = actor_loss(pi.log_prob, q, alpha)
        if not self.algorithm.learn_alpha:
            return loss_pi, loss_pi, torch.zeros((), device=obs.device), pi.log_prob.detach()
        loss_alpha = alpha_loss(log_alpha, pi.log_prob, self.target_entropy)
        return loss_pi + loss_alpha, loss_pi, loss_alpha, pi.log_prob.detach()

    # ---- state ----

    def state_dict(self) -> dict:
        return super().state_dict() | {"last": {k: v.clone() for k, v in self._last.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._last = {k: v.to(self.device) for k, v in state["last"].items()}
