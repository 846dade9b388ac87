"""Policy and critic networks. Tensors in, tensors out."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# relu in place: safe for autograd here (a matmul's backward does not need its output) and saves a copy.
ACTIVATIONS = {"relu": torch.relu_, "tanh": torch.tanh, "elu": F.elu, "gelu": F.gelu, "silu": F.silu}
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
LOG_2 = math.log(2.0)


def tanh_log_det_jacobian(u: Tensor) -> Tensor:
    """log(1 - tanh(u)^2), in the stable form 2 (log 2 - u - softplus(-2u))."""
    return 2.0 * (LOG_2 - u - F.softplus(-2.0 * u))


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy: a = tanh(mu + sigma * eps), actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str = "relu",
                 log_std_min: float = -20.0, log_std_max: float = 2.0):
        super().__init__()
        sizes = [obs_dim, *hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], 2 * act_dim)
        self.act_fn = ACTIVATIONS[activation]
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        x = obs
        for layer in self.hidden:
            x = self.act_fn(layer(x))
        mean, log_std = self.head(x).float().chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterized sample and its log-probability under the squashed distribution."""
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        gaussian_log_prob = -0.5 * eps.pow(2) - log_std - LOG_SQRT_2PI
        log_prob = (gaussian_log_prob - tanh_log_det_jacobian(u)).sum(-1)
        return torch.tanh(u), log_prob

    def deterministic(self, obs: Tensor) -> Tensor:
        return torch.tanh(self(obs)[0])

    def explore(self, obs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A sampled action, without the log-probability (acting needs none)."""
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return torch.tanh(mean + log_std.exp() * eps)


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
        self.act_fn = ACTIVATIONS[activation]
        self.num_q = num_q

    def forward(self, obs: Tensor, action: Tensor, params: Sequence[Tensor] | None = None) -> Tensor:
        """Q-values of shape [num_q, batch]. `params` (weights then biases) overrides the module's own."""
        n_layers = len(self.weights)
        if params is None:
            weights, biases = list(self.weights), list(self.biases)
        else:
            weights, biases = params[:n_layers], params[n_layers:]
        x = torch.cat([obs, action], dim=-1)
        x = x.unsqueeze(0).expand(self.num_q, *x.shape)
        for i, (w, b) in enumerate(zip(weights, biases)):
            x = torch.baddbmm(b, x, w)
            if i < n_layers - 1:
                x = self.act_fn(x)
        return x.squeeze(-1).float()

    def param_list(self) -> list[Tensor]:
        return [*self.weights, *self.biases]
