"""Policy and critic networks. Tensors in, tensors out.

Plain MLPs serve both update paths: autograd differentiates their forward passes, and the hand-derived
kernel (backprop.py) runs the same layers (`layers()` hands them over). With `layer_norm`, each hidden layer
is normalized before its activation (as in DroQ and later SAC variants); with `renorm` (keyword arguments of
BatchRenorm), the input and each hidden layer's activations are batch-renormalized (CrossQ). Only the autograd
path trains either.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sac_runner.nn.activations import ACTIVATIONS
from sac_runner.nn.backprop import Layer, linear, mlp_output
from sac_runner.nn.batch_renorm import BatchRenorm
from sac_runner.nn.distributions import SquashedSample, squashed_gaussian


class MLP(nn.Module):
    """Hidden layers (each optionally LayerNorm-ed before its activation, or batch-renormalized after it, the
    input too) and a linear head."""

    def __init__(self, inputs: int, outputs: int, hidden_sizes: Sequence[int], activation: str = "relu",
                 layer_norm: bool = False, renorm: dict | None = None):
        super().__init__()
        sizes = [inputs, *hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.LayerNorm(o) for o in hidden_sizes) if layer_norm else None
        self.renorms = nn.ModuleList(BatchRenorm(o, **renorm) for o in sizes) if renorm is not None else None
        self.head = nn.Linear(sizes[-1], outputs)
        self.activation = ACTIVATIONS[activation]
        self.activation_fn = ACTIVATIONS[activation].function

    def mlp(self, x: Tensor) -> Tensor:
        """The head's output, through autograd's ops."""
        if self.renorms is not None:
            x = self.renorms[0](x)
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            x = self.activation_fn(self.norms[i](x) if self.norms is not None else x)
            if self.renorms is not None:
                x = self.renorms[i + 1](x)
        return self.head(x)

    @property
    def plain(self) -> bool:
        """Linear layers and activations only (what the hand-derived passes run)."""
        return self.norms is None and self.renorms is None


class Actor(MLP):
    """Tanh-squashed Gaussian policy: a = tanh(mu + sigma * eps), actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str = "relu",
                 log_std_min: float = -20.0, log_std_max: float = 2.0, layer_norm: bool = False,
                 renorm: dict | None = None):
        super().__init__(obs_dim, 2 * act_dim, hidden_sizes, activation, layer_norm, renorm)
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        # The bounds as tensors for the update: inductor's graph cache can hand an update compiled with
        # other float bounds to a new agent, so compiled code takes them as inputs, not constants.
        self.register_buffer("log_std_bounds", torch.tensor([log_std_min, log_std_max]), persistent=False)
        # The parameter objects stay the same through .to() and loads (only their data changes): listed once,
        # for acting's sake (a module attribute lookup per layer and call is a measurable share of an action).
        self._layers = [(m.weight, m.bias) for m in (*self.hidden, self.head)]

    def layers(self) -> list[Layer]:
        return list(self._layers)

    def head_output(self, obs: Tensor) -> Tensor:
        """[mean | raw log-std] of the Gaussian before the tanh, [batch, 2 * act_dim]."""
        if self.plain:
            return mlp_output(self._layers, obs, self.activation)
        return self.mlp(obs)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and (clamped) log standard deviation of the Gaussian before the tanh."""
        mean, log_std = self.head_output(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample_with(self, obs: Tensor, eps: Tensor) -> SquashedSample:
        """The reparameterized sample for the given standard-normal noise, and its log-probability."""
        low, high = self.log_std_bounds
        return squashed_gaussian(self.head_output(obs), eps, low, high)

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        eps = torch.randn(obs.shape[0], self.act_dim, generator=generator, device=obs.device)
        s = self.sample_with(obs, eps)
        return s.action, s.log_prob

    def deterministic(self, obs: Tensor) -> Tensor:
        return torch.tanh(self(obs)[0])

    def explore(self, obs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A sampled action, without the log-probability (acting needs none). Computed in place in the head's
        output (no gradient can flow): acting is a dozen tiny ops, each allocation a measurable share."""
        mean, log_std = self.head_output(obs).chunk(2, dim=-1)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean.addcmul_(log_std.clamp_(self.log_std_min, self.log_std_max).exp_(), eps).tanh_()


class DeterministicActor(MLP):
    """mu(s) = tanh(MLP(s)): TD3's and DDPG's policy, actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str = "relu",
                 layer_norm: bool = False):
        super().__init__(obs_dim, act_dim, hidden_sizes, activation, layer_norm)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.mlp(obs))


class SamplingNetwork(MLP):
    """Soft Q-learning's policy: u = f(s, xi), xi ~ N(0, I), a = tanh(u) (actions in [-1, 1]); it has samples but
    no density."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str = "relu"):
        super().__init__(obs_dim + act_dim, act_dim, hidden_sizes, activation)
        self.act_dim = act_dim

    def forward(self, obs: Tensor, noise: Tensor) -> Tensor:
        """u before the tanh, for observations [..., obs_dim] and noise [..., act_dim]."""
        return self.mlp(torch.cat([obs, noise], dim=-1))


class CriticEnsemble(nn.Module):
    """`num_q` Q-networks evaluated together: each layer is one batched matmul over the ensemble."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str = "relu",
                 num_q: int = 2, layer_norm: bool = False, renorm: dict | None = None):
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init, per member
            self.weights.append(nn.Parameter(torch.empty(num_q, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_q, 1, fan_out).uniform_(-bound, bound)))
        # per-member LayerNorm gain and shift of each hidden layer
        self.norm_gains = nn.ParameterList(nn.Parameter(torch.ones(num_q, 1, o)) for o in hidden_sizes) \
            if layer_norm else None
        self.norm_shifts = nn.ParameterList(nn.Parameter(torch.zeros(num_q, 1, o)) for o in hidden_sizes) \
            if layer_norm else None
        # per-member batch renormalization of the input and of each hidden layer's activations
        self.renorms = nn.ModuleList(BatchRenorm(o, members=num_q, **renorm) for o in sizes[:-1]) \
            if renorm is not None else None
        self.activation = ACTIVATIONS[activation]
        self.activation_fn = ACTIVATIONS[activation].function
        self.num_q = num_q

    def layers(self) -> list[Layer]:
        return list(zip(self.weights, self.biases))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q-values of shape [num_q, batch]."""
        x = torch.cat([obs, action], dim=-1)
        if self.renorms is not None:
            x = self.renorms[0](x.expand(self.num_q, *x.shape))
            for w, b, renorm in zip(self.weights[:-1], self.biases[:-1], self.renorms[1:]):
                x = renorm(self.activation_fn(torch.baddbmm(b, x, w)))
            return linear(x, self.weights[-1], self.biases[-1]).squeeze(-1)
        if self.norm_gains is None:
            return mlp_output(self.layers(), x, self.activation).squeeze(-1)
        x = x.expand(self.num_q, *x.shape)
        for w, b, gain, shift in zip(self.weights, self.biases, self.norm_gains, self.norm_shifts):
            z = torch.baddbmm(b, x, w)
            x = self.activation_fn(torch.addcmul(shift, F.layer_norm(z, z.shape[-1:]), gain))
        return linear(x, self.weights[-1], self.biases[-1]).squeeze(-1)

    def param_list(self) -> list[Tensor]:
        return list(self.parameters())
