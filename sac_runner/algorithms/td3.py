"""TD3 (Fujimoto et al. 2018, "Addressing Function Approximation Error in Actor-Critic Methods") and the DDPG
that paper re-tuned ("Our DDPG": one critic, no target smoothing, no delay): the baselines of the SAC paper's
Figure 1, under the same trainer, replay, evaluation and logging as SAC.

A deterministic tanh actor mu(s) explores with Gaussian noise in the normalized action space; the critics learn
the clipped double-Q target with target policy smoothing (losses.py); the actor and both targets move every
`policy_delay` critic updates. Autograd update path only (the hand-derived kernel is SAC's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sac_runner.algorithms.base import MISSING, Agent, flat_with_optimizer, mlp_parameters
from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.losses import critic_loss, deterministic_actor_loss, smoothed_target_action, td_target
from sac_runner.errors import require
from sac_runner.nn.networks import CriticEnsemble, DeterministicActor
from sac_runner.update.optim import FlatParameters


@dataclass
class TD3Config:
    """conf/algorithm/td3.yaml holds the values (and ddpg.yaml extends it)."""
    name: str = MISSING
    num_q: int = MISSING  # critics: 2 (clipped double Q) or 1 (DDPG)
    policy_noise: float = MISSING  # std of the target smoothing noise, in [-1, 1] action units (0: none)
    noise_clip: float = MISSING
    policy_delay: int = MISSING  # critic updates per actor (and target) update
    exploration_noise: float = MISSING  # std of the Gaussian added to mu(s) when acting, in [-1, 1] units


class TD3(Agent):
    """algorithm: num_q (2: TD3's twin critics, 1: DDPG), policy_noise and noise_clip (target smoothing; 0: none),
    policy_delay, exploration_noise (std of the Gaussian added to mu(s) when acting, in [-1, 1] units)."""

    FAMILY = "td3"
    NAMES = ("td3", "ddpg")  # DDPG: TD3's agent with one critic, no target smoothing, no delay
    Config = TD3Config
    METRICS = ("loss/critic", "loss/actor", "q_mean")

    @classmethod
    def validate(cls, algorithm: Any, cfg: Any) -> None:
        a = algorithm
        require(a.num_q in (1, 2), "algorithm.num_q", "1 (DDPG) or 2 (TD3's twin critics)", a.num_q)
        for key in ("policy_noise", "noise_clip", "exploration_noise"):
            require(a[key] >= 0, f"algorithm.{key}", "a standard deviation >= 0 (in [-1, 1] action units)", a[key])
        require(a.policy_delay >= 1, "algorithm.policy_delay", "an integer >= 1", a.policy_delay)
        interval = cfg.hyperparameters.target_update_interval
        require(interval == 1, "hyperparameters.target_update_interval",
                f"1 with algorithm={a.name}: its targets move with the delayed actor (algorithm.policy_delay)",
                interval)

    @classmethod
    def memory_bytes(cls, obs_dim: int, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any) -> int:
        """Actor and critics with gradients, Adam's moments and targets, and a batch's activations."""
        hidden = list(network.hidden_sizes)
        actor = mlp_parameters(obs_dim, hidden, act_dim)
        critics = algorithm.num_q * mlp_parameters(obs_dim + act_dim, hidden, 1)
        activations = 2 * hyperparameters.batch_size * sum(hidden) * (2 + 2 * algorithm.num_q)
        return 4 * (5 * actor + 5 * critics + activations)

    def __init__(self, obs, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any, *,
                 precision: str = "fp32", compile: bool = False, update: str = "auto",
                 device: torch.device | str = "cpu", seed: int = 0):
        super().__init__(obs, act_dim, network, hyperparameters, algorithm, precision=precision, update=update,
                         device=device, seed=seed)
        n = network
        obs_dim = self.obs_dim
        self.actor = DeterministicActor(obs_dim, act_dim, n.hidden_sizes, n.activation,
                                        layer_norm=n.layer_norm).to(self.device)
        self.critic = CriticEnsemble(obs_dim, act_dim, n.hidden_sizes, n.activation, num_q=algorithm.num_q,
                                     layer_norm=n.layer_norm).to(self.device)
        self.actor_target, self.critic_target = self.target_of(self.actor), self.target_of(self.critic)
        hp = hyperparameters
        self.actor_params, self.actor_optim = flat_with_optimizer(list(self.actor.parameters()), hp, False)
        self.critic_params, self.critic_optim = flat_with_optimizer(self.critic_tensors(self.critic), hp, False)
        self.actor_target_params = FlatParameters(list(self.actor_target.parameters()), grads=False)
        self.critic_target_params = FlatParameters(self.critic_target.param_list(), grads=False)
        self.networks = self.with_encoder({
            "actor": (self.actor, self.actor_params), "critic": (self.critic, self.critic_params),
            "actor_target": (self.actor_target, self.actor_target_params),
            "critic_target": (self.critic_target, self.critic_target_params)})
        self.optimizers = {"actor_optim": self.actor_optim, "critic_optim": self.critic_optim}
        self.polyak_pairs = [(self.critic_target_params, self.critic_params),
                             (self.actor_target_params, self.actor_params)]
        self._last_actor_loss = torch.zeros((), device=self.device)  # reported between delayed actor steps
        self._objectives(compile, "_critic_objective", "_actor_objective")

    # ---- acting ----

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        action = self.actor(self.encoder(obs))
        if deterministic:
            return action
        noise = torch.randn(action.shape, generator=self.generator, device=action.device)
        return exploration_action(action, noise, self.algorithm.exploration_noise)

    # ---- learning ----

    def actor_steps_now(self) -> bool:
        """Whether the coming update moves the actor and the targets (every policy_delay-th)."""
        return (self.num_updates + 1) % self.algorithm.policy_delay == 0

    def update(self, batch: Batch) -> dict[str, Tensor]:
        with torch.no_grad():
            # smoothing noise drawn here, outside a compiled update (a generator cannot be traced)
            noise = torch.randn(batch.action.shape, generator=self.generator, device=self.device)
            actor_step = self.actor_steps_now()
            self.critic_optim.advance()
            if actor_step:
                self.actor_optim.advance()
            return self._counted(lambda: self._update(batch, noise, actor_step))

    def _update(self, b: Batch, noise: Tensor, actor_step: bool) -> dict[str, Tensor]:
        b = self.encoded(b)
        loss_q, q_mean = self._gradient_step(self.critic_params, self.critic_optim, self._critic_objective, b, noise)
        if actor_step:
            loss_mu = self._gradient_step(self.actor_params, self.actor_optim, self._actor_objective, b.obs.detach(),
                                          inputs=list(self.actor.parameters()))
            self.polyak()
            self._last_actor_loss = loss_mu.detach()
        return {"loss/critic": loss_q.detach(), "loss/actor": self._last_actor_loss, "q_mean": q_mean}

    def _critic_objective_eager(self, b: Batch, noise: Tensor) -> tuple[Tensor, Tensor]:
        a = self.algorithm
        with torch.no_grad():
            next_action = smoothed_target_action(self.actor_target(b.next_obs), noise * a.policy_noise, a.noise_clip)
            next_q = self.critic_target(b.next_obs, next_action).amin(0)  # clipped double Q (DDPG: its one critic)
            target = td_target(b.reward, b.terminated, next_q, self.hp.gamma)
        q = self.critic(b.obs, b.action)
        return critic_loss(q, target), q.detach().mean()

    def _actor_objective_eager(self, obs: Tensor) -> Tensor:
        return deterministic_actor_loss(self.critic(obs, self.actor(obs))[0])

    # ---- state ----

    def state_dict(self) -> dict:
        return super().state_dict() | {"last_actor_loss": self._last_actor_loss.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._last_actor_loss = state["last_actor_loss"].to(self.device)


def exploration_action(action: Tensor, noise: Tensor, scale: float) -> Tensor:
    """mu(s) + N(0, scale^2), clipped to the action bounds [-1, 1]."""
    return (action + scale * noise).clamp_(-1.0, 1.0)
