"""Encoders: what turns an observation into the feature vector the networks' heads take.

`identity` serves flat vector observations (features = the observation, flattened and in float32); `drq` serves
images (obs=pixels). A new encoder is a class here taking (obs_shape, network config) with `out_dim`,
`memory_bytes(batch)` and a forward from a batch of observations [batch, *shape] to features [batch, out_dim],
listed in ENCODERS, and a conf/network/<name>.yaml naming it. An encoder with parameters is trained with the
critics (by the critic loss, in the critics' optimizer); the policy takes its features detached."""
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

    def memory_bytes(self, batch: int) -> int:
        return 0


def conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


class DrQEncoder(nn.Module):
    """The conv encoder of DrQ / DrQ-v2 for [C, H, W] uint8 images: pixels scaled to [-0.5, 0.5], four 3x3 conv
    layers of `conv_channels` (the first with stride 2) with ReLU, then a trunk Linear -> feature_dim, LayerNorm,
    tanh. The trunk reads the conv output in (H, W, C) order: free in channels_last, the layout the convolutions run
    in, and one order whatever the layout, so a model acts the same in either."""

    LAYERS = ((3, 2), (3, 1), (3, 1), (3, 1))  # (kernel, stride)
    MIN_SIZE = 15  # the smallest side the layers leave a pixel of

    def __init__(self, obs_shape: Sequence[int], network=None):
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"network.encoder=drq takes images [C, H, W]; these observations have shape "
                             f"{tuple(obs_shape)}: use obs=pixels")
        c, h, w = (int(s) for s in obs_shape)
        if min(h, w) < self.MIN_SIZE:
            raise ValueError(f"network.encoder=drq needs images of at least {self.MIN_SIZE}x{self.MIN_SIZE} pixels "
                             f"(its conv layers leave nothing of {h}x{w}); raise env.obs.size to {self.MIN_SIZE} or "
                             "more")
        channels = getattr(network, "conv_channels", 32)
        features = getattr(network, "feature_dim", 50)
        layers: list[nn.Module] = []
        inputs = c
        self._floats = c * h * w  # activations of one image's forward pass: input, each conv's output and ReLU
        for kernel, stride in self.LAYERS:
            layers += [nn.Conv2d(inputs, channels, kernel, stride), nn.ReLU()]
            inputs, h, w = channels, conv_out(h, kernel, stride), conv_out(w, kernel, stride)
            self._floats += 2 * channels * h * w
        self.convs = nn.Sequential(*layers)
        self.conv_shape = (channels, h, w)
        self.trunk = nn.Linear(channels * h * w, features)
        self.norm = nn.LayerNorm(features)
        self.out_dim = features
        self.macs_per_image = self._macs(obs_shape)
        # network.encoder_precision=bf16: convolutions and trunk in bfloat16 (autocast; parameters, their gradients
        # and Adam stay float32), fast where the CPU has AVX-512 BF16 or AMX (benchmarks/pixels.py)
        self.bf16 = getattr(network, "encoder_precision", "fp32") == "bf16"
        # channels_last: oneDNN's fast convolutions on CPUs (fp32 forward and backward 1.7x, bf16 1.35x NCHW's on an
        # AVX-512 EPYC); the trunk then reads the conv output without a copy
        self.layout = torch.channels_last

    def _macs(self, obs_shape: Sequence[int]) -> int:
        """Multiply-accumulates of one image's forward pass (conv layers and trunk)."""
        c, h, w = obs_shape
        total = 0
        for conv in self.convs[::2]:
            k, s = conv.kernel_size[0], conv.stride[0]
            h, w = conv_out(h, k, s), conv_out(w, k, s)
            total += h * w * conv.out_channels * c * k * k
            c = conv.out_channels
        return total + self.trunk.in_features * self.trunk.out_features

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.to(torch.float32, memory_format=self.layout)  # one copy: the dtype and the layout
        if obs.dtype == torch.uint8:
            x = x.mul_(1 / 255).sub_(0.5)
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.bf16):
            x = self.convs(x)
            x = self.trunk(x.permute(0, 2, 3, 1).flatten(1))
        return torch.tanh(self.norm(x.float()))

    def memory_bytes(self, batch: int) -> int:
        """Float32 activations of a training batch, kept for the backward pass and matched by its gradients."""
        return 4 * 2 * batch * self._floats


ENCODERS: dict[str, type[nn.Module]] = {"identity": IdentityEncoder, "drq": DrQEncoder}
NAMES = tuple(ENCODERS)


def make_encoder(name: str, obs_shape: Sequence[int], network=None) -> nn.Module:
    """The encoder `name` for observations of this shape (network: the config's network group, for its sizes)."""
    if name == "identity":
        return IdentityEncoder(obs_shape)
    return ENCODERS[name](obs_shape, network)
