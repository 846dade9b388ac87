"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

The agent sees tensors only: no Hydra, no files, no Gymnasium. Actions live in [-1, 1];
the env wrapper rescales them to the env's bounds.

Two update paths compute the same update from the equations in losses.py:
- autograd: losses -> backward() into the flat gradient buffers -> FlatAdam. Any network (LayerNorm
  included), any device; compiled with torch.compile on request, captured as a CUDA graph on a GPU.
- fast: the hand-derived backward passes of backprop.py, for plain MLPs on a CPU (no autograd bookkeeping,
  which costs about as much as the arithmetic there). tests/test_fast_update.py proves it equal to autograd.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from sac_runner.algorithms.base import Agent, flat_with_optimizer, mlp_parameters
from sac_runner.algorithms.batch import Batch
from sac_runner.algorithms.losses import (
    actor_loss,
    actor_loss_grads,
    alpha_loss,
    alpha_loss_grad,
    critic_loss,
    critic_loss_grad,
    soft_q_target,
)
from sac_runner.algorithms.temperature import LearnedTemperature, TemperatureConfig
from sac_runner.nn.activations import ACTIVATIONS
from sac_runner.nn.backprop import Layer, Trace, mlp_backward, mlp_forward, mlp_output, squashed_gaussian_backward
from sac_runner.nn.distributions import SquashedSample, squashed_gaussian
from sac_runner.nn.networks import Actor, CriticEnsemble
from sac_runner.update.cuda_graph import CapturedUpdate
from sac_runner.update.optim import FlatParameters, LowPrecisionCopy

log = logging.getLogger(__name__)


@dataclass
class SACConfig(TemperatureConfig):
    """conf/algorithm/sac.yaml holds the values (and sac_fixed_alpha.yaml extends it)."""


class SAC(LearnedTemperature, Agent):
    """algorithm: learn_alpha, alpha (initial or fixed temperature), target_entropy or target_entropy_scale."""

    FAMILY = "sac"
    NAMES = ("sac", "sac_fixed_alpha")  # learned and fixed temperature
    Config = SACConfig
    METRICS = ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q_mean")
    PROGRESS = {"alpha": "alpha"}
    HAS_FAST_PATH = True

    @classmethod
    def memory_bytes(cls, obs_dim: int, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any) -> int:
        """Actor and two critics with gradients and Adam's moments, the critics' targets, and a batch's
        activations (the policy runs on two batches), forward and backward."""
        hidden = list(network.hidden_sizes)
        actor = mlp_parameters(obs_dim, hidden, 2 * act_dim)
        critics = 2 * mlp_parameters(obs_dim + act_dim, hidden, 1)
        activations = 2 * hyperparameters.batch_size * sum(hidden) * (2 + 2 * 2)
        return 4 * (4 * actor + 5 * critics + activations)

    def __init__(self, obs, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any, *,
                 precision: str = "fp32", compile: bool = False, update: str = "auto",
                 device: torch.device | str = "cpu", seed: int = 0):
        super().__init__(obs, act_dim, network, hyperparameters, algorithm, precision=precision, update=update,
                         device=device, seed=seed)
        learn_alpha = algorithm.learn_alpha
        n = network
        obs_dim = self.obs_dim
        self.actor = Actor(obs_dim, act_dim, n.hidden_sizes, n.activation, n.log_std_min, n.log_std_max,
                           layer_norm=n.layer_norm).to(self.device)
        self.critic = CriticEnsemble(obs_dim, act_dim, n.hidden_sizes, n.activation,
                                     layer_norm=n.layer_norm).to(self.device)
        self.critic_target = self.target_of(self.critic)
        self._init_temperature(algorithm, act_dim, self.device)

        # The temperature shares the actor's buffer (and its Adam step): both are stepped after the policy loss.
        # Adam's formula where the compiler fuses it (the compiled fast path) or a CUDA graph captures it; the
        # fused kernel elsewhere (the compiled autograd path compiles its losses and runs Adam eagerly).
        compiled_adam = (compile and self.update_path == "fast") or self.device.type == "cuda"
        self._actor_tensors = [*self.actor.parameters(), *([self.log_alpha] if learn_alpha else [])]
        self.critic_params, self.critic_optim = flat_with_optimizer(self.critic_tensors(self.critic), hyperparameters,
                                                                    compiled_adam)
        self.actor_params, self.actor_optim = flat_with_optimizer(self._actor_tensors, hyperparameters,
                                                                  compiled_adam)
        self.target_params = FlatParameters(self.critic_target.param_list(), grads=False)
        self.networks = self.with_encoder({
            "actor": (self.actor, self.actor_params), "critic": (self.critic, self.critic_params),
            "critic_target": (self.critic_target, self.target_params)})
        self.optimizers = {"actor_optim": self.actor_optim, "critic_optim": self.critic_optim}
        self.polyak_pairs = [(self.target_params, self.critic_params)]
        self.activation = ACTIVATIONS[n.activation]

        # The fast path's layers, by where they lie in the flat buffers. In bf16 mode the layers between hidden
        # layers (the large matmuls) use bfloat16 copies of the weights, refreshed wherever the float32 weights
        # change (in the update right after each step, where the compiler fuses the copy into the step; and on
        # load). Input layers (raw observations, small K) and output layers stay float32.
        self._low_precision: dict[str, LowPrecisionCopy] = {}
        if precision == "bf16":
            self._low_precision = {name: LowPrecisionCopy(flat, torch.bfloat16) for name, flat in (
                ("actor", self.actor_params), ("critic", self.critic_params), ("target", self.target_params))}
            if len(n.hidden_sizes) < 2:
                log.warning("precision=bf16 runs the layers between hidden layers in bfloat16; with one hidden "
                            "layer there are none, so it changes nothing")
        if self.update_path == "fast":
            networks = (("actor", self.actor, self.actor_params), ("critic", self.critic, self.critic_params),
                        ("target", self.critic_target, self.target_params))
            self._slots = {name: [(flat.slot_of(w), flat.slot_of(b)) for w, b in module.layers()]
                           for name, module, flat in networks}
            self._log_alpha_slot = self.actor_params.slot_of(self.log_alpha) if learn_alpha else None
            self._views = {name: self._make_views(name) for name in self.VIEWS}
        self._update_fn: Callable[..., dict[str, Tensor]] = \
            self._fast_update if self.update_path == "fast" else self._autograd_update
        # autograd: the losses and their backward passes compiled (Adam's fused kernel steps the flat buffers eagerly)
        self._objectives(compile and self.update_path != "fast", "_critic_objective", "_actor_objective")
        if compile and self.update_path == "fast":  # one graph: the whole update, Adam and Polyak included
            self._compile({"_update_fn": self._fast_update})
        if self.device.type == "cuda" and self.update_path == "autograd":

            self._graph = CapturedUpdate(self)

    # ---- learning ----

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient step on critics, actor and temperature; then the target update when due.

        Returns scalar tensors (no host sync here; the caller reads them when it logs)."""
        with torch.no_grad():
            # noise drawn here, outside a compiled or captured update (a generator cannot be traced); next_obs's
            # first, then obs's
            n, act_dim = batch.action.shape
            eps = torch.cat([torch.randn(n, act_dim, generator=self.generator, device=self.device)
                             for _ in range(2)])
            self.critic_optim.advance()
            self.actor_optim.advance()
            polyak = (self.num_updates + 1) % self.hp.target_update_interval == 0
            # the update looked up at the call: a failed compile swaps in the eager one before the retry
            return self._counted(lambda: (self._update_fn if self._graph is None else self._graph.run)(
                batch, eps, polyak))

    def _autograd_update(self, b: Batch, eps: Tensor, polyak: bool, polyak_inside: bool = True
                         ) -> dict[str, Tensor]:
        """The paper's update in its usual order (critics, then policy and temperature, each from the current
        parameters): each loss from losses.py, backward() into the flat gradient buffers, one Adam step each."""
        b = self.encoded(b)
        n = b.obs.shape[0]
        alpha = self.log_alpha.detach().exp()
        loss_q, q_mean = self._gradient_step(self.critic_params, self.critic_optim, self._critic_objective, b,
                                             eps[:n], alpha)
        _, loss_pi, loss_alpha, log_prob = self._gradient_step(
            self.actor_params, self.actor_optim, self._actor_objective, b.obs.detach(), eps[n:], alpha,
            self.log_alpha, inputs=self._actor_tensors)
        if polyak and polyak_inside:
            self.polyak()
        return {"loss/critic": loss_q.detach(), "loss/actor": loss_pi.detach(), "loss/alpha": loss_alpha.detach(),
                "alpha": alpha, "entropy": -log_prob.mean(), "q_mean": q_mean}

    def _critic_objective_eager(self, b: Batch, next_eps: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        """J_Q against the soft target (the target computed without gradient), and the mean Q for the log."""
        with torch.no_grad():
            next_pi = self.actor.sample_with(b.next_obs, next_eps)
            next_q = self.critic_target(b.next_obs, next_pi.action).amin(0)
            target = soft_q_target(b.reward, b.terminated, next_q, next_pi.log_prob, alpha, self.hp.gamma)
        q = self.critic(b.obs, b.action)
        return critic_loss(q, target), q.detach().mean()

    def _actor_objective_eager(self, obs: Tensor, eps: Tensor, alpha: Tensor, log_alpha: Tensor
                               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """J_pi through the (just stepped) critics, plus J(alpha) when the temperature is learned."""
        pi = self.actor.sample_with(obs, eps)
        loss_pi = actor_loss(pi.log_prob, self.critic(obs, pi.action).amin(0), alpha)
        if not self.algorithm.learn_alpha:
            return loss_pi, loss_pi, torch.zeros((), device=obs.device), pi.log_prob.detach()
        loss_alpha = alpha_loss(log_alpha, pi.log_prob, self.target_entropy)
        return loss_pi + loss_alpha, loss_pi, loss_alpha, pi.log_prob.detach()

    def _fast_update(self, b: Batch, eps: Tensor, polyak: bool) -> dict[str, Tensor]:
        """The same update with hand-derived gradients (backprop.py) in place of autograd: each loss from
        losses.py, and its derivative with respect to the networks' outputs from beside it."""
        n, act = b.obs.shape[0], self.activation
        actor_layers, critic_layers = self._layers("actor"), self._layers("critic")
        log_alpha = self._log_alpha()
        alpha = log_alpha.exp()

        # The policy on next_obs (for the target) and on obs (for the policy loss) in one pass: the actor's
        # parameters do not change in between.
        head, actor_trace = mlp_forward(actor_layers, torch.cat([b.next_obs, b.obs]), act)
        low, high = self.actor.log_std_bounds
        pi = squashed_gaussian(head, eps, low, high)

        # Critic step: J_Q against the soft target.
        next_q = mlp_output(self._layers("target"), torch.cat([b.next_obs, pi.action[:n]], dim=-1), act)
        target = soft_q_target(b.reward, b.terminated, next_q.amin(0).squeeze(-1), pi.log_prob[:n], alpha,
                               self.hp.gamma)
        q, critic_trace = mlp_forward(critic_layers, torch.cat([b.obs, b.action], dim=-1), act)
        q = q.squeeze(-1)  # [num_q, batch]
        loss_q = critic_loss(q, target)
        mlp_backward(critic_layers, critic_trace, critic_loss_grad(q, target).unsqueeze(-1), act,
                     grads=self._layers("critic_grads"))
        self.critic_optim.step()
        self._sync_low_precision("critic")

        # Policy step through the stepped critics; gradients flow into the action only.
        action, log_prob = pi.action[n:], pi.log_prob[n:]
        q_pi, q_trace = mlp_forward(critic_layers, torch.cat([b.obs, action], dim=-1), act)
        q_min, argmin = q_pi.squeeze(-1).min(dim=0)
        loss_pi = actor_loss(log_prob, q_min, alpha)
        grad_log_prob, grad_q_min = actor_loss_grads(log_prob, alpha)
        # the gradient reaches the smaller of the critics only
        grad_q_pi = torch.zeros_like(q_pi).scatter_(0, argmin.view(1, n, 1), grad_q_min)
        grad_action = mlp_backward(critic_layers, q_trace, grad_q_pi, act, grads=None,
                                   input_cols=slice(self.obs_dim, None)).sum(0, dtype=torch.float32)
        grad_head = squashed_gaussian_backward(pi_half(pi, n), grad_action, grad_log_prob, low, high)
        mlp_backward(actor_layers, trace_rows(actor_trace, n), grad_head, act, grads=self._layers("actor_grads"))
        if self.algorithm.learn_alpha:
            loss_alpha = alpha_loss(log_alpha, log_prob, self.target_entropy)
            self.log_alpha.grad.copy_(alpha_loss_grad(log_prob, self.target_entropy))
        else:
            loss_alpha = torch.zeros((), device=self.device)
        self.actor_optim.step()
        self._sync_low_precision("actor")
        if polyak:
            self.polyak()
            self._sync_low_precision("target")

        return {"loss/critic": loss_q, "loss/actor": loss_pi, "loss/alpha": loss_alpha, "alpha": alpha,
                "entropy": -log_prob.mean(), "q_mean": q.mean()}

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
        if self.update_path != "fast" or self._log_alpha_slot is None or not torch.compiler.is_compiling():
            return self.log_alpha
        return self._log_alpha_slot.at(self.actor_params.data)

    def _sync_low_precision(self, *names: str) -> None:
        for name in names or tuple(self._low_precision):
            if name in self._low_precision:
                self._low_precision[name].sync()

    # ---- state ----

    def _after_load(self) -> None:
        self._sync_low_precision()

    def load_weights(self, weights: dict, reset: tuple[str, ...] = ()) -> None:
        if "critic" in weights and "critic_target" not in weights:  # a model.pt written before targets were saved
            weights = {**weights, "critic_target": weights["critic"]}
        super().load_weights(weights, reset)


def pi_half(s: SquashedSample, start: int) -> SquashedSample:
    return SquashedSample(*(t[start:] for t in s))


def trace_rows(trace: Trace, start: int) -> Trace:
    """The part of a forward trace for batch rows start: (the policy-loss half of the actor pass)."""
    return Trace([x[start:] for x in trace.inputs], [p[start:] if p is not None else None for p in trace.pre])
