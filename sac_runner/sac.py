"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

The agent sees tensors only: no Hydra, no files, no Gymnasium. Actions live in [-1, 1];
the env wrapper rescales them to the env's bounds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .batch import Batch, restore_generator
from .backprop import (ACTIVATIONS, Layer, SquashedSample, Trace, mlp_backward, mlp_forward, mlp_output,
                       squashed_gaussian, squashed_gaussian_backward)
from .networks import Actor, CriticEnsemble
from .optim import FlatAdam, FlatParameters, LowPrecisionCopy

log = logging.getLogger(__name__)


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
        self.obs_dim = obs_dim
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

        # Each network's tensors are views of one flat buffer: Adam and Polyak are one op each. The
        # temperature shares the actor's buffer (and its Adam step): both are stepped after the policy loss.
        self.critic_params = FlatParameters(self.critic.param_list())
        self.target_params = FlatParameters(self.critic_target.param_list(), grads=False)
        self.actor_params = FlatParameters([*self.actor.parameters(), *([self.log_alpha] if cfg.learn_alpha else [])])
        self.critic_optim = FlatAdam(self.critic_params, lr=cfg.lr, compiled=cfg.compile)
        self.actor_optim = FlatAdam(self.actor_params, lr=cfg.lr, compiled=cfg.compile)
        self.activation = ACTIVATIONS[cfg.activation]

        # The layers the update computes with, by where they lie in the flat buffers. In bf16 mode the layers
        # between hidden layers (the large matmuls) use bfloat16 copies of the weights, refreshed wherever the
        # float32 weights change (in the update right after each step, where the compiler fuses the copy into
        # the step; and on load). Input layers (raw observations, small K) and output layers stay float32.
        self._low_precision: dict[str, LowPrecisionCopy] = {}
        if cfg.precision == "bf16":
            self._low_precision = {name: LowPrecisionCopy(flat, torch.bfloat16) for name, flat in (
                ("actor", self.actor_params), ("critic", self.critic_params), ("target", self.target_params))}
        networks = (("actor", self.actor, self.actor_params), ("critic", self.critic, self.critic_params),
                    ("target", self.critic_target, self.target_params))
        self._slots = {name: [(flat.slot_of(w), flat.slot_of(b)) for w, b in module.layers()]
                       for name, module, flat in networks}
        self._log_alpha_slot = self.actor_params.slot_of(self.log_alpha) if cfg.learn_alpha else None
        self._views = {name: self._make_views(name) for name in self.VIEWS}
        if cfg.precision == "bf16" and len(cfg.hidden_sizes) < 2:
            log.warning("precision=bf16 runs the layers between hidden layers in bfloat16; with one hidden layer "
                        "there are none, so it changes nothing")
        self.num_updates = 0
        self._update_fn: Callable[[Batch, Tensor, bool], dict[str, Tensor]] = self._update
        self._compile_pending = cfg.compile
        if cfg.compile:
            # on a CPU the graph's glue code compiled too (C++ wrapper): 3-6% per update, no longer to compile
            self._update_fn = torch.compile(self._update, options={"cpp_wrapper": self.device.type == "cpu"})

    # ---- acting ----

    @torch.inference_mode()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        if deterministic:
            return self.actor.deterministic(obs)
        return self.actor.explore(obs, self.generator)

    # ---- learning ----

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient step on critics, actor and temperature; then the target update when due.

        Returns scalar tensors (no host sync here; the caller reads them when it logs)."""
        with torch.no_grad():
            # noise drawn here, outside a compiled update (a generator cannot be traced); next_obs's first
            n, act_dim = batch.action.shape
            eps = torch.cat([torch.randn(n, act_dim, generator=self.generator, device=self.device)
                             for _ in range(2)])
            self.critic_optim.advance()
            self.actor_optim.advance()
            polyak = (self.num_updates + 1) % self.cfg.target_update_interval == 0
            if self._compile_pending:
                metrics = self._first_compiled_update(batch, eps, polyak)
            else:
                metrics = self._update_fn(batch, eps, polyak)
            self.num_updates += 1
        return metrics

    def _first_compiled_update(self, batch: Batch, eps: Tensor, polyak: bool) -> dict[str, Tensor]:
        """The first call compiles (seconds). Where that fails (no C++ compiler, say), training goes on eagerly:
        compilation fails before the compiled code runs, so no parameter has moved."""
        self._compile_pending = False
        log.info("compiling the update with torch.compile (once, takes a few seconds)")
        try:
            return self._update_fn(batch, eps, polyak)
        except Exception as e:  # inductor raises many types; none of them is the user's mistake
            log.warning("torch.compile failed (%s: %s); the update runs eagerly", type(e).__name__,
                        str(e).strip().splitlines()[0] if str(e).strip() else "")
            self._update_fn = self._update
            self.critic_optim.run_eagerly()
            self.actor_optim.run_eagerly()
            return self._update(batch, eps, polyak)

    def _update(self, b: Batch, eps: Tensor, polyak: bool) -> dict[str, Tensor]:
        """The paper's update in its usual order (critics, then policy and temperature, each from the
        current parameters), with hand-derived gradients (backprop.py) in place of autograd."""
        cfg, act = self.cfg, self.activation
        n = b.obs.shape[0]
        actor_layers, critic_layers = self._layers("actor"), self._layers("critic")
        log_alpha = self._log_alpha()
        alpha = log_alpha.exp()

        # The policy on next_obs (for the target) and on obs (for the policy loss) in one pass: the actor's
        # parameters do not change in between.
        head, actor_trace = mlp_forward(actor_layers, torch.cat([b.next_obs, b.obs]), act)
        pi = squashed_gaussian(head, eps, cfg.log_std_min, cfg.log_std_max)

        # Critic step: J_Q against the soft target.
        next_q = mlp_output(self._layers("target"), torch.cat([b.next_obs, pi.action[:n]], dim=-1), act)
        target = soft_q_target(b.reward, b.terminated, next_q.amin(0).squeeze(-1), pi.log_prob[:n], alpha,
                               cfg.gamma)
        q, critic_trace = mlp_forward(critic_layers, torch.cat([b.obs, b.action], dim=-1), act)
        q = q.squeeze(-1)  # [num_q, batch]
        loss_q = critic_loss(q, target)
        grad_q = (q - target) / n  # d J_Q / d Q_j
        mlp_backward(critic_layers, critic_trace, grad_q.unsqueeze(-1), act, grads=self._layers("critic_grads"))
        self.critic_optim.step()
        self._sync_low_precision("critic")

        # Policy step through the stepped critics; gradients flow into the action only.
        action, log_prob = pi.action[n:], pi.log_prob[n:]
        q_pi, q_trace = mlp_forward(critic_layers, torch.cat([b.obs, action], dim=-1), act)
        q_min, argmin = q_pi.squeeze(-1).min(dim=0)
        loss_pi = actor_loss(log_prob, q_min, alpha)
        # d J_pi / d Q_j: -1/batch for the smaller of the critics, 0 for the other; d J_pi / d log pi: alpha/batch
        grad_q_pi = torch.zeros_like(q_pi).scatter_(0, argmin.view(1, n, 1), -1.0 / n)
        grad_action = mlp_backward(critic_layers, q_trace, grad_q_pi, act, grads=None,
                                   input_cols=slice(self.obs_dim, None)).sum(0, dtype=torch.float32)
        grad_head = squashed_gaussian_backward(pi_half(pi, n), grad_action, alpha / n, cfg.log_std_min,
                                               cfg.log_std_max)
        mlp_backward(actor_layers, trace_rows(actor_trace, n), grad_head, act, grads=self._layers("actor_grads"))
        mean_log_prob = log_prob.mean()
        if cfg.learn_alpha:
            loss_alpha = alpha_loss(log_alpha, log_prob, self.target_entropy)
            self.log_alpha.grad.copy_(-(mean_log_prob + self.target_entropy))  # d J(alpha) / d log alpha
        else:
            loss_alpha = torch.zeros((), device=self.device)
        self.actor_optim.step()
        self._sync_low_precision("actor")
        if polyak:
            polyak_update([self.target_params.data], [self.critic_params.data], cfg.tau)
            self._sync_low_precision("target")

        return {"loss/critic": loss_q, "loss/actor": loss_pi, "loss/alpha": loss_alpha, "alpha": alpha,
                "entropy": -mean_log_prob, "q_mean": q.mean()}

    # ---- the update's tensors ----

    VIEWS = ("actor", "critic", "target", "actor_grads", "critic_grads")

    def _layers(self, name: str) -> list[Layer]:
        """Layers (or gradient buffers) of the update, as views of the flat buffers, made once. A compiled
        update makes the layers' views inside its graph, so that the compiler sees one input per parameter
        buffer (no aliased inputs to copy back: Adam writes the buffers in place). Gradient views
        stay inputs: made in the graph, their writes get fused into the Adam pass as a gather, twice as slow."""
        if torch.compiler.is_compiling() and not name.endswith("_grads"):
            return self._make_views(name)
        return self._views[name]

    def _make_views(self, name: str) -> list[Layer]:
        network = name.removesuffix("_grads")
        flat = {"actor": self.actor_params, "critic": self.critic_params, "target": self.target_params}[network]
        slots = self._slots[network]
        if name.endswith("_grads"):
            return [(w.at(flat.grad), b.at(flat.grad)) for w, b in slots]
        copy = self._low_precision.get(network)
        buffers = [copy.data if copy is not None and 0 < i < len(slots) - 1 else flat.data
                   for i in range(len(slots))]
        return [(w.at(buffer), b.at(buffer)) for (w, b), buffer in zip(slots, buffers)]

    def _log_alpha(self) -> Tensor:
        """log alpha; as for the layers, a compiled update makes its view of the actor's buffer in its graph."""
        if self._log_alpha_slot is None or not torch.compiler.is_compiling():
            return self.log_alpha
        return self._log_alpha_slot.at(self.actor_params.data)

    def _sync_low_precision(self, *names: str) -> None:
        for name in names or tuple(self._low_precision):
            if name in self._low_precision:
                self._low_precision[name].sync()

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    # ---- state ----

    def non_finite_parameters(self) -> list[str]:
        """Names of parameters holding NaN or infinity (empty when all are finite): one check per flat buffer,
        names looked up only for a buffer that fails it."""
        bad = []
        networks = (("actor", self.actor, self.actor_params), ("critic", self.critic, self.critic_params),
                    ("critic_target", self.critic_target, self.target_params))
        for prefix, module, flat in networks:
            if not torch.isfinite(flat.data).all():
                bad += [f"{prefix}.{n}" for n, p in module.named_parameters() if not torch.isfinite(p).all()]
        if not torch.isfinite(self.log_alpha).all():
            bad.append("log_alpha")
        return bad

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optim": self.actor_optim.state_dict(),  # with the temperature's Adam state when learned
            "critic_optim": self.critic_optim.state_dict(),
            "generator": self.generator.get_state(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.log_alpha.detach().copy_(state["log_alpha"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        restore_generator(self.generator, state["generator"], fallback_seed=int(state["num_updates"]))
        self.num_updates = int(state["num_updates"])
        self._sync_low_precision()


def pi_half(s: SquashedSample, start: int) -> SquashedSample:
    return SquashedSample(*(t[start:] for t in s))


def trace_rows(trace: Trace, start: int) -> Trace:
    """The part of a forward trace for batch rows start: (the policy-loss half of the actor pass)."""
    return Trace([x[start:] for x in trace.inputs], [p[start:] if p is not None else None for p in trace.pre])
