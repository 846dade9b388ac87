"""Policy and critic networks. Tensors in, tensors out.

Their forward passes serve acting and evaluation; the learning update runs the same layers through the
hand-derived passes in backprop.py (`layers()` hands them over).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .backprop import ACTIVATIONS, Layer, mlp_output, squashed_gaussian


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy: a = tanh(mu + sigma * eps), actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str = "relu",
                 log_std_min: float = -20.0, log_std_max: float = 2.0):
        super().__init__()
        sizes = [obs_dim, *hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], 2 * act_dim)
        self.activation = ACTIVATIONS[activation]
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        # The parameter objects stay the same through .to() and loads (only their data changes): listed once,
        # for acting's sake (a module attribute lookup per layer and call is a measurable share of an action).
        self._layers = [(m.weight, m.bias) for m in (*self.hidden, self.head)]

    def layers(self) -> list[Layer]:
        return list(self._layers)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and (clamped) log standard deviation of the Gaussian before the tanh."""
        mean, log_std = mlp_output(self.layers(), obs, self.activation).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterized sample and its log-probability under the squashed distribution."""
        head = mlp_output(self.layers(), obs, self.activation)
        eps = torch.randn(obs.shape[0], self.act_dim, generator=generator, device=obs.device, dtype=head.dtype)
        s = squashed_gaussian(head, eps, self.log_std_min, self.log_std_max)
        return s.action, s.log_prob

    def deterministic(self, obs: Tensor) -> Tensor:
        return torch.tanh(self(obs)[0])

    def explore(self, obs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A sampled action, without the log-probability (acting needs none). Computed in place in the head's
        output (no gradient can flow): acting is a dozen tiny ops, each allocation a measurable share."""
        mean, log_std = mlp_output(self._layers, obs, self.activation).chunk(2, dim=-1)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean.addcmul_(log_std.clamp_(self.log_std_min, self.log_std_max).exp_(), eps).tanh_()


class CriticEnsemble(nn.Module):
    """`num_q` Q-networks evaluated together: each layer is one batched matmul over the ensemble."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str = "relu",
                 num_q: int = 2):
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init, per member
            self.weights.append(nn.Parameter(torch.empty(num_q, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_q, 1, fan_out).uniform_(-bound, bound)))
        self.activation = ACTIVATIONS[activation]
        self.num_q = num_q

    def layers(self) -> list[Layer]:
        return list(zip(self.weights, self.biases))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q-values of shape [num_q, batch]."""
        return mlp_output(self.layers(), torch.cat([obs, action], dim=-1), self.activation).squeeze(-1)

    def param_list(self) -> list[Tensor]:
        return [*self.weights, *self.biases]
