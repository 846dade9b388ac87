"""Encoders: what turns an observation into the feature vector the networks' heads take.

`identity` serves flat vector observations (features = the observation, flattened and in float32). A new encoder
(a conv net for images, say) is a class here with `out_dim` and a forward from a batch of observations
[batch, *shape] to features [batch, out_dim], listed in ENCODERS, and a conf/network/<name>.yaml naming it."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


class IdentityEncoder(nn.Module):
    """Features are the observation itself (flattened, float32): no parameters, no cost for flat float input."""

    def __init__(self, obs_shape: Sequence[int]):
        super().__init__()
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.out_dim = math.prod(self.obs_shape)

    def forward(self, obs: Tensor) -> Tensor:
        if obs.dim() == 2 and obs.dtype == torch.float32:
            return obs
        return obs.reshape(obs.shape[0], -1).float()


ENCODERS: dict[str, type[nn.Module]] = {"identity": IdentityEncoder}
NAMES = tuple(ENCODERS)


def make_encoder(name: str, obs_shape: Sequence[int]) -> nn.Module:
    return ENCODERS[name](obs_shape)
