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
from typing import Any, Callable

import torch
from torch import Tensor

from .backprop import ACTIVATIONS, Layer, Trace, mlp_backward, mlp_forward, mlp_output, squashed_gaussian_backward
from .batch import Batch, restore_generator
from .distributions import SquashedSample, squashed_gaussian
from .losses import (actor_loss, actor_loss_grads, alpha_loss, alpha_loss_grad, critic_loss, critic_loss_grad,
                     polyak_update, soft_q_target)
from .networks import Actor, CriticEnsemble
from .optim import FlatAdam, FlatParameters, LowPrecisionCopy
from .update_path import choose_update_path

log = logging.getLogger(__name__)

class SAC:
    """network, hyperparameters, algorithm: the config's groups (the schema's dataclasses in config.py, or any
    objects with those attributes); the agent reads them and copies nothing."""

    METRICS = ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q_mean")

    def __init__(self, obs_dim: int, act_dim: int, network: Any, hyperparameters: Any, algorithm: Any, *,
                 precision: str = "fp32", compile: bool = False, update: str = "auto",
                 device: torch.device | str = "cpu", seed: int = 0):
        self.network, self.hp, self.algorithm = network, hyperparameters, algorithm
        self.device = torch.device(device)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.precision = precision
        self.update_path = choose_update_path(update, precision, network, self.device)
        learn_alpha = algorithm.learn_alpha
        n = network
        torch.manual_seed(seed)
        self.actor = Actor(obs_dim, act_dim, n.hidden_sizes, n.activation, n.log_std_min, n.log_std_max,
                           layer_norm=n.layer_norm).to(self.device)
        self.critic = CriticEnsemble(obs_dim, act_dim, n.hidden_sizes, n.activation,
                                     layer_norm=n.layer_norm).to(self.device)
        self.critic_target = CriticEnsemble(obs_dim, act_dim, n.hidden_sizes, n.activation,
                                            layer_norm=n.layer_norm).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.tensor(float(algorithm.alpha), device=self.device).log().requires_grad_(learn_alpha)
        self.target_entropy = float(algorithm.target_entropy if algorithm.target_entropy is not None
                                    else -algorithm.target_entropy_scale * act_dim)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 1)

        # Each network's tensors are views of one flat buffer: Adam and Polyak are one op each. The
        # temperature shares the actor's buffer (and its Adam step): both are stepped after the policy loss.
        self.critic_params = FlatParameters(self.critic.param_list())
        self.target_params = FlatParameters(self.critic_target.param_list(), grads=False)
        self.actor_params = FlatParameters([*self.actor.parameters(), *([self.log_alpha] if learn_alpha else [])])
        self._actor_tensors = [*self.actor.parameters(), *([self.log_alpha] if learn_alpha else [])]
        # Adam's formula where the compiler fuses it (the compiled fast path) or a CUDA graph captures it; the
        # fused kernel elsewhere (the compiled autograd path compiles its losses and runs Adam eagerly)
        formula = (compile and self.update_path == "fast") or self.device.type == "cuda"
        self.critic_optim = FlatAdam(self.critic_params, lr=hyperparameters.lr, compiled=formula)
        self.actor_optim = FlatAdam(self.actor_params, lr=hyperparameters.lr, compiled=formula)
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
        self.num_updates = 0
        self._update_fn: Callable[..., dict[str, Tensor]] = \
            self._fast_update if self.update_path == "fast" else self._autograd_update
        self._critic_objective, self._actor_objective = self._critic_objective_eager, self._actor_objective_eager
        self._compile_pending = compile
        if compile:
            # on a CPU the graph's glue code compiled too (C++ wrapper): 3-6% per update, no longer to compile
            options = {"cpp_wrapper": self.device.type == "cpu"}
            if self.update_path == "fast":  # one graph: the whole update, Adam and Polyak included
                self._update_fn = torch.compile(self._fast_update, options=options)
            else:  # the losses and their backward passes; Adam's fused kernel steps the flat buffers eagerly
                self._critic_objective = torch.compile(self._critic_objective_eager, options=options)
                self._actor_objective = torch.compile(self._actor_objective_eager, options=options)
        self._graph = None
        if self.device.type == "cuda" and self.update_path == "autograd":
            from .cuda_graph import CapturedUpdate

            self._graph = CapturedUpdate(self)

    def describe_update(self) -> str:
        """One line for the log: which update path runs, and how."""
        how = {"fast": "hand-derived backward passes (backprop.py)", "autograd": "autograd"}[self.update_path]
        extras = [self.precision] + (["torch.compile"] if self.compiled else []) + (["CUDA graph"] if self._graph
                                                                                    else [])
        return f"update path: {self.update_path} ({how}; {', '.join(extras)}) on {self.device}"

    @property
    def compiled(self) -> bool:
        """Whether the update runs (or is about to run) compiled code."""
        return self._update_fn not in (self._fast_update, self._autograd_update) or \
            self._critic_objective != self._critic_objective_eager

    def _run_eagerly(self) -> None:
        self._update_fn = self._fast_update if self.update_path == "fast" else self._autograd_update
        self._critic_objective, self._actor_objective = self._critic_objective_eager, self._actor_objective_eager
        self.critic_optim.run_eagerly()
        self.actor_optim.run_eagerly()

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
            # noise drawn here, outside a compiled or captured update (a generator cannot be traced); next_obs's
            # first, then obs's
            n, act_dim = batch.action.shape
            eps = torch.cat([torch.randn(n, act_dim, generator=self.generator, device=self.device)
                             for _ in range(2)])
            self.critic_optim.advance()
            self.actor_optim.advance()
            polyak = (self.num_updates + 1) % self.hp.target_update_interval == 0
            if self._graph is not None:
                metrics = self._graph.run(batch, eps, polyak)
            elif self._compile_pending:
                metrics = self._first_compiled_update(batch, eps, polyak)
            else:
                metrics = self._update_fn(batch, eps, polyak)
            self.num_updates += 1
        return metrics

    def _first_compiled_update(self, batch: Batch, eps: Tensor, polyak: bool) -> dict[str, Tensor]:
        """The first call compiles (seconds). Where that fails (no C++ compiler, say), training goes on eagerly
        from the state before the call (the autograd path compiles its second loss after the first step)."""
        self._compile_pending = False
        log.info("compiling the update with torch.compile (once, takes a few seconds)")
        saved = self.snapshot()
        try:
            return self._update_fn(batch, eps, polyak)
        except Exception as e:  # inductor raises many types; none of them is the user's mistake
            log.warning("torch.compile failed (%s: %s); the update runs eagerly", type(e).__name__,
                        str(e).strip().splitlines()[0] if str(e).strip() else "")
            self.restore(saved)
            self._run_eagerly()
            return self._update_fn(batch, eps, polyak)

    def _autograd_update(self, b: Batch, eps: Tensor, polyak: bool, polyak_inside: bool = True
                         ) -> dict[str, Tensor]:
        """The paper's update in its usual order (critics, then policy and temperature, each from the current
        parameters): each loss from losses.py, backward() into the flat gradient buffers, one Adam step each."""
        n = b.obs.shape[0]
        alpha = self.log_alpha.detach().exp()
        with torch.enable_grad():
            loss_q, q_mean = self._critic_objective(b, eps[:n], alpha)
            self.critic_params.grad.zero_()  # in place: the gradients stay views of the flat buffer
            loss_q.backward()
        self.critic_optim.step()
        with torch.enable_grad():
            loss, loss_pi, loss_alpha, log_prob = self._actor_objective(b.obs, eps[n:], alpha, self.log_alpha)
            self.actor_params.grad.zero_()
            loss.backward(inputs=self._actor_tensors)  # the critics' gradients stay the critic loss's
        self.actor_optim.step()
        if polyak and polyak_inside:
            polyak_update([self.target_params.data], [self.critic_params.data], self.hp.tau)
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
        n, nw, act = b.obs.shape[0], self.network, self.activation
        actor_layers, critic_layers = self._layers("actor"), self._layers("critic")
        log_alpha = self._log_alpha()
        alpha = log_alpha.exp()

        # The policy on next_obs (for the target) and on obs (for the policy loss) in one pass: the actor's
        # parameters do not change in between.
        head, actor_trace = mlp_forward(actor_layers, torch.cat([b.next_obs, b.obs]), act)
        pi = squashed_gaussian(head, eps, nw.log_std_min, nw.log_std_max)

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
        grad_head = squashed_gaussian_backward(pi_half(pi, n), grad_action, grad_log_prob, nw.log_std_min,
                                               nw.log_std_max)
        mlp_backward(actor_layers, trace_rows(actor_trace, n), grad_head, act, grads=self._layers("actor_grads"))
        if self.algorithm.learn_alpha:
            loss_alpha = alpha_loss(log_alpha, log_prob, self.target_entropy)
            self.log_alpha.grad.copy_(alpha_loss_grad(log_prob, self.target_entropy))
        else:
            loss_alpha = torch.zeros((), device=self.device)
        self.actor_optim.step()
        self._sync_low_precision("actor")
        if polyak:
            polyak_update([self.target_params.data], [self.critic_params.data], self.hp.tau)
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

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    # ---- state ----

    def snapshot(self) -> list[tuple[Tensor, Tensor]]:
        """Copies of every tensor an update changes, for restore()."""
        tensors = [self.critic_params.data, self.actor_params.data, self.target_params.data]
        for optim in (self.critic_optim, self.actor_optim):
            tensors += [optim.exp_avg, optim.exp_avg_sq]
        return [(t, t.clone()) for t in tensors]

    def restore(self, saved: list[tuple[Tensor, Tensor]]) -> None:
        for t, copy in saved:
            t.copy_(copy)
        self._sync_low_precision()

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
