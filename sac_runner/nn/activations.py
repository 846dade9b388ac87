"""The hidden-layer activations a network may use, by the name the config gives: one table holding each
function and the derivative the hand-derived passes (backprop.py) use."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

aten = torch.ops.aten


class Activation(NamedTuple):
    function: Callable[[Tensor], Tensor]  # out of place (autograd paths)
    forward: Callable[[Tensor], Tensor]  # in place where the op allows (no gradient flows)
    # (matmul output, bias) -> activation of their sum, in place where the op allows
    add_forward: Callable[[Tensor, Tensor], Tensor]
    # (grad of output, layer output, layer pre-activation or None) -> grad of pre-activation (may reuse grad)
    backward: Callable[[Tensor, Tensor, Tensor | None], Tensor]
    needs_input: bool  # does the backward need the pre-activation (kept only then)


def _activation(function, in_place, backward, needs_input: bool = False) -> Activation:
    return Activation(function, in_place, lambda z, b: in_place(z.add_(b)), backward, needs_input)


def _relu_of_sum(z: Tensor, b: Tensor) -> Tensor:
    """relu(z + b) in place, in one pass where the fused op exists (CPU, float32)."""
    if z.is_cpu and z.dtype == torch.float32 and not torch.compiler.is_compiling():
        return aten._add_relu_(z, b)
    return torch.relu_(z.add_(b))


def _relu_backward(g: Tensor, y: Tensor, x: Tensor | None) -> Tensor:
    return aten.threshold_backward.grad_input(g, y, 0, grad_input=g)  # masks g in place (y > 0 where x > 0)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(torch.relu, torch.relu_, _relu_of_sum, _relu_backward, needs_input=False),
    "tanh": _activation(torch.tanh, torch.tanh_, lambda g, y, x: aten.tanh_backward.grad_input(g, y, grad_input=g)),
    "elu": _activation(F.elu, F.elu, lambda g, y, x: aten.elu_backward(g, 1.0, 1, 1, True, y)),
    "gelu": _activation(F.gelu, F.gelu, lambda g, y, x: aten.gelu_backward(g, x), needs_input=True),
    "silu": _activation(F.silu, F.silu, lambda g, y, x: aten.silu_backward(g, x), needs_input=True),
}
NAMES = tuple(ACTIVATIONS)
