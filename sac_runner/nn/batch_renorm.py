"""Batch Renormalization (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch Dependence in
Batch-Normalized Models"), as CrossQ uses it (Bhatt et al. 2024).

In training mode a layer normalizes with the batch's statistics, corrected towards the running ones:
    x_hat = (x - mu_B) / sigma_B * r + d,   r = clip(sigma_B / sigma, 1/r_max, r_max),
                                            d = clip((mu_B - mu) / sigma, -d_max, d_max),
r and d held constant in the backward pass. For the first `warmup` training passes r = 1 and d = 0 (plain
batch norm). In eval mode it uses the running statistics: x_hat = (x - mu) / sigma. The running mean and
variance move towards the batch's by `momentum` per training pass; they are buffers, so a state dict (and a
checkpoint) carries them.

Statistics are taken over the second-to-last dimension, so one layer serves a batch [B, F] and an ensemble
[K, B, F] (with `members=K`: each member its own statistics and affine parameters).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class BatchRenorm(nn.Module):
    def __init__(self, features: int, members: int | None = None, momentum: float = 0.01, eps: float = 1e-3,
                 warmup: int = 100_000, r_max: float = 3.0, d_max: float = 5.0):
        super().__init__()
        shape = (*(() if members is None else (members,)), 1, features)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.momentum, self.eps, self.warmup, self.r_max, self.d_max = momentum, eps, warmup, r_max, d_max

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return (x - self.running_mean) * torch.rsqrt(self.running_var + self.eps) * self.weight + self.bias
        mean = x.mean(dim=-2, keepdim=True)
        var = x.var(dim=-2, unbiased=False, keepdim=True)
        std = torch.sqrt(var + self.eps)
        with torch.no_grad():
            running_std = torch.sqrt(self.running_var + self.eps)
            warm = self.steps >= self.warmup
            r = torch.where(warm, (std / running_std).clamp(1.0 / self.r_max, self.r_max), 1.0)
            d = torch.where(warm, ((mean - self.running_mean) / running_std).clamp(-self.d_max, self.d_max), 0.0)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
            self.steps += 1
        return ((x - mean) / std * r + d) * self.weight + self.bias
