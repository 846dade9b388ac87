"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

The agent sees tensors only: no Hydra, no files, no Gymnasium. Actions live in [-1, 1];
the env wrapper rescales them to the env's bounds.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .networks import Actor, CriticEnsemble

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor  # 1.0 at a true terminal state; 0.0 otherwise, including time-limit truncation


@dataclass
class SACConfig:
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    target_update_interval: int = 1
    learn_alpha: bool = True
    alpha: float = 1.0
    target_entropy: float = -1.0
    precision: str = "fp32"  # fp32 | bf16
    compile: bool = False


# ---- the paper's equations, one function each ----

def soft_q_target(reward: Tensor, terminated: Tensor, next_q: Tensor, next_log_prob: Tensor,
                  alpha: Tensor, gamma: float) -> Tensor:
    """y = r + gamma * (1 - done) * (min_j Q'_j(s', a') - alpha * log pi(a'|s')), a' ~ pi(.|s')."""
    return reward + gamma * (1.0 - terminated) * (next_q - alpha * next_log_prob)


def critic_loss(q: Tensor, target: Tensor) -> Tensor:
    """J_Q = E[1/2 (Q_j(s, a) - y)^2], summed over the critics. q: [num_q, B], target: [B]."""
    return 0.5 * (q - target).pow(2).mean(dim=1).sum()


def actor_loss(log_prob: Tensor, q_new: Tensor, alpha: Tensor) -> Tensor:
    """J_pi = E[alpha * log pi(a|s) - min_j Q_j(s, a)], a = f(eps; s) reparameterized."""
    return (alpha * log_prob - q_new).mean()


def alpha_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """J(alpha) = E[-alpha (log pi(a|s) + H_target)], minimized over log alpha."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def polyak_update(target: list[Tensor], online: list[Tensor], tau: float) -> None:
    """target <- (1 - tau) target + tau online, one fused op over all tensors."""
    torch._foreach_lerp_(target, online, tau)


class SAC:
    METRICS = ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q_mean")

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, device: torch.device | str = "cpu",
                 seed: int = 0):
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.actor = Actor(obs_dim, act_dim, cfg.hidden_sizes, cfg.activation, cfg.log_std_min,
                           cfg.log_std_max).to(self.device)
        self.critic = CriticEnsemble(obs_dim, act_dim, cfg.hidden_sizes, cfg.activation).to(self.device)
        self.critic_target = CriticEnsemble(obs_dim, act_dim, cfg.hidden_sizes, cfg.activation).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.tensor(float(cfg.alpha), device=self.device).log().requires_grad_(cfg.learn_alpha)
        self.target_entropy = float(cfg.target_entropy)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 1)

        opt_kwargs = dict(lr=cfg.lr, **_fast_adam_kwargs(self.device))
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), **opt_kwargs)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), **opt_kwargs)
        self.alpha_optim = torch.optim.Adam([self.log_alpha], **opt_kwargs) if cfg.learn_alpha else None
        self.num_updates = 0
        self._update_fn: Callable[[Batch], dict[str, Tensor]] = self._update
        if cfg.compile:
            self._update_fn = torch.compile(self._update)

    # ---- acting ----

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Acting stays float32 in every precision mode: one observation gains nothing from bf16."""
        if deterministic:
            return self.actor.deterministic(obs)
        return self.actor.explore(obs, self.generator)

    # ---- learning ----

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient step on critics, actor and temperature; then the target update when due.

        Returns detached scalar tensors (no host sync here; the caller reads them when it logs)."""
        metrics = self._update_fn(batch)
        self.num_updates += 1
        if self.num_updates % self.cfg.target_update_interval == 0:
            with torch.no_grad():
                polyak_update(self.critic_target.param_list(), self.critic.param_list(), self.cfg.tau)
        return metrics

    def _update(self, batch: Batch) -> dict[str, Tensor]:
        alpha = self.log_alpha.detach().exp()

        with torch.no_grad(), self._autocast():
            next_action, next_log_prob = self.actor.sample(batch.next_obs, self.generator)
            next_q = self.critic_target(batch.next_obs, next_action).min(dim=0).values
        target = soft_q_target(batch.reward, batch.terminated, next_q, next_log_prob, alpha, self.cfg.gamma)
        with self._autocast():
            q = self.critic(batch.obs, batch.action)
        loss_q = critic_loss(q, target)
        self.critic_optim.zero_grad(set_to_none=True)
        loss_q.backward()
        self.critic_optim.step()

        # Policy step: gradients flow into the action only, never into the critic weights.
        with self._autocast():
            action, log_prob = self.actor.sample(batch.obs, self.generator)
            frozen = [p.detach() for p in self.critic.param_list()]
            q_new = self.critic(batch.obs, action, params=frozen).min(dim=0).values
        loss_pi = actor_loss(log_prob, q_new, alpha)
        if self.alpha_optim is not None:
            loss_alpha = alpha_loss(self.log_alpha, log_prob, self.target_entropy)
            self.actor_optim.zero_grad(set_to_none=True)
            self.alpha_optim.zero_grad(set_to_none=True)
            (loss_pi + loss_alpha).backward()  # disjoint parameters: one backward pass serves both
            self.actor_optim.step()
            self.alpha_optim.step()
        else:
            loss_alpha = torch.zeros((), device=self.device)
            self.actor_optim.zero_grad(set_to_none=True)
            loss_pi.backward()
            self.actor_optim.step()

        return {
            "loss/critic": loss_q.detach(),
            "loss/actor": loss_pi.detach(),
            "loss/alpha": loss_alpha.detach(),
            "alpha": alpha,
            "entropy": -log_prob.detach().mean(),
            "q_mean": q.detach().mean(),
        }

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    # ---- state ----

    def non_finite_parameters(self) -> list[str]:
        """Names of parameters holding NaN or infinity (empty when all are finite)."""
        bad = []
        for prefix, module in (("actor", self.actor), ("critic", self.critic), ("critic_target", self.critic_target)):
            bad += [f"{prefix}.{n}" for n, p in module.named_parameters() if not torch.isfinite(p).all()]
        if not torch.isfinite(self.log_alpha).all():
            bad.append("log_alpha")
        return bad

    def state_dict(self) -> dict:
        state = {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "generator": self.generator.get_state(),
            "num_updates": self.num_updates,
        }
        if self.alpha_optim is not None:
            state["alpha_optim"] = self.alpha_optim.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        if self.alpha_optim is not None:
            self.alpha_optim.load_state_dict(state["alpha_optim"])
        restore_generator(self.generator, state["generator"], fallback_seed=int(state["num_updates"]))
        self.num_updates = int(state["num_updates"])


def restore_generator(generator: torch.Generator, state: Tensor, fallback_seed: int) -> None:
    """Restore a generator's state; a state from another device type (a CUDA run resumed on CPU, say)
    cannot be, so the generator is reseeded and the run continues, no longer bit for bit."""
    try:
        generator.set_state(state)
    except RuntimeError:
        log.warning("random-number state saved on another device type: reseeding; the resumed run is not "
                    "bit-identical to an uninterrupted one")
        generator.manual_seed(fallback_seed)


def _fast_adam_kwargs(device: torch.device) -> dict:
    """Fused Adam where this torch build has it for the device, else the foreach implementation."""
    try:
        torch.optim.Adam([torch.zeros(1, device=device, requires_grad=True)], fused=True)
        return {"fused": True}
    except (RuntimeError, TypeError):
        return {"foreach": True}
