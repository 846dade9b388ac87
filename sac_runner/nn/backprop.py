"""Hand-derived forward and backward passes for SAC's networks, without autograd.

One SAC update is a few dozen small kernels; under autograd each also builds a graph node, and the
bookkeeping costs about as much as the arithmetic on a CPU. Here each layer's backward is written out
(matmuls, bias sums, the activation's derivative), and weight gradients go straight into preallocated
buffers. `tests/test_fast_update.py` checks every gradient against a plain autograd reference.

Precision: each layer runs in its weight's dtype; inputs and gradients are cast on the way in. In bf16
mode the layers between hidden layers get bfloat16 copies of the weights; input and output layers stay
float32, so observations enter unrounded and Q-values, log-probabilities and every optimizer quantity are
float32 (gradient buffers are float32 in all modes).

Layouts: a 2-D weight is nn.Linear's [out, in] (the actor); a 3-D weight is an ensemble's
[members, in, out] with biases [members, 1, out] (the critics), whose input may be shared ([batch, in]).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from sac_runner.nn.activations import Activation
from sac_runner.nn.distributions import SquashedSample

Layer = tuple[Tensor, Tensor]  # (weight, bias)


class Trace(NamedTuple):
    """What a forward pass keeps for its backward: each layer's input, and hidden pre-activations if needed."""
    inputs: list[Tensor]
    pre: list[Tensor | None]


def _per_member(x: Tensor, w: Tensor) -> Tensor:
    """An ensemble layer's input as [members, batch, in]; a [batch, in] input is shared by every member."""
    return x.expand(w.shape[0], *x.shape) if x.dim() == 2 else x


def linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x w + b. A layer with one output per member (the Q-value) is a matrix-vector product, which MKL's
    batched GEMM runs about 4x slower as [batch, in] x [in, 1] than transposed, [1, in] x [in, batch] (73 vs
    19 us forward and 80 vs 9 us for the weight gradient; 2 members, batch 256, 256 inputs, AMD EPYC)."""
    if w.dim() == 2:
        return torch.addmm(b, x, w.t())
    if w.shape[2] == 1:  # one output per member: transposed
        return torch.baddbmm(b, w.transpose(1, 2), _per_member(x, w).transpose(1, 2)).transpose(1, 2)
    return torch.baddbmm(b, _per_member(x, w), w)


def hidden(x: Tensor, w: Tensor, b: Tensor, act: Activation) -> Tensor:
    """act(x w + b), the bias added in the activation's pass rather than copied into the matmul output
    (a fused op autograd cannot differentiate: under autograd, the plain composition)."""
    if torch.is_grad_enabled():
        return act.forward(linear(x, w, b))
    if w.dim() == 2:
        z = x @ w.t()
    else:
        z = torch.bmm(_per_member(x, w), w)
    return act.add_forward(z, b)


def mlp_forward(layers: Sequence[Layer], x: Tensor, act: Activation) -> tuple[Tensor, Trace]:
    """Hidden layers with `act`, a linear output layer. Returns the output and the trace for mlp_backward."""
    inputs, pre = [], []
    *hidden_layers, (w_out, b_out) = layers
    for w, b in hidden_layers:
        x = _as(x, w)
        inputs.append(x)
        if act.needs_input:
            pre.append(linear(x, w, b))
            x = act.forward(pre[-1])
        else:
            pre.append(None)
            x = hidden(x, w, b, act)
    x = _as(x, w_out)
    inputs.append(x)
    return linear(x, w_out, b_out), Trace(inputs, pre)


def mlp_output(layers: Sequence[Layer], x: Tensor, act: Activation) -> Tensor:
    """Forward pass that keeps nothing (targets, acting)."""
    *hidden_layers, (w_out, b_out) = layers
    for w, b in hidden_layers:
        x = hidden(_as(x, w), w, b, act)
    return linear(_as(x, w_out), w_out, b_out)


def mlp_backward(layers: Sequence[Layer], trace: Trace, grad_out: Tensor, act: Activation,
                 grads: Sequence[Layer] | None, input_cols: slice | None = None) -> Tensor | None:
    """Backpropagate grad_out through the layers of a forward pass.

    grads: buffers (weight grad, bias grad) per layer to write into, or None when only the input gradient
    is wanted (the policy step through frozen critics). input_cols: the input columns whose gradient is
    returned (None: no input gradient, which saves the first layer's input matmul).
    """
    g = grad_out
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        x = trace.inputs[i]
        g = _as(g, w)
        if grads is not None:
            gw, gb = grads[i]
            if w.dim() == 2:
                _into(gw, torch.mm, g.t(), x)
                torch.sum(g, 0, dtype=gb.dtype, out=gb)
            else:
                if w.shape[2] == 1:  # one output per member: gw^T = g^T x (see linear)
                    _into(gw.view(gw.shape[0], 1, gw.shape[1]), torch.bmm, g.transpose(1, 2), x)
                else:
                    _into(gw, torch.bmm, _per_member(x, w).transpose(1, 2), g)
                torch.sum(g, 1, keepdim=True, dtype=gb.dtype, out=gb)
        if i == 0:
            if input_cols is None:
                return None
            w = w[:, input_cols] if w.dim() == 2 else w[:, input_cols, :]
        if w.dim() == 2:
            g = g @ w
        elif w.shape[2] == 1:  # a scalar output per member (the Q-value): an outer product, done as a broadcast
            g = g * w.transpose(1, 2)
        else:
            g = torch.bmm(g, w.transpose(1, 2))
        if i > 0:
            g = act.backward(g, x, trace.pre[i - 1])
    return g


def _as(x: Tensor, like: Tensor) -> Tensor:
    return x if x.dtype == like.dtype else x.to(like.dtype)


def _into(out: Tensor, matmul, a: Tensor, b: Tensor) -> None:
    """out = a @ b, written in place; a low-precision product is converted into the float32 buffer."""
    if a.dtype == out.dtype:
        matmul(a, b, out=out)
    else:
        out.copy_(matmul(a, b))


# ---- the tanh-squashed Gaussian head (distributions.py) ----

def squashed_gaussian_backward(s: SquashedSample, grad_action: Tensor, grad_log_prob: Tensor,
                               log_std_min: float, log_std_max: float) -> Tensor:
    """Gradient w.r.t. the head's output [mean, log_std] for a reparameterized sample (eps held fixed).

    d a/du = 1 - a^2; d log_prob/du = 2a (from -log(1 - tanh(u)^2)); d u/d log_std = std * eps;
    d log_prob/d log_std = -1 directly; the clamp passes gradient only inside [log_std_min, log_std_max].
    """
    a = s.action
    grad_u = torch.addcmul(grad_action * (1.0 - a.square()), a, 2.0 * grad_log_prob)
    grad_log_std = torch.addcmul(-grad_log_prob, grad_u * s.std, s.eps)
    in_range = (s.log_std_raw >= log_std_min) & (s.log_std_raw <= log_std_max)
    return torch.cat([grad_u, grad_log_std * in_range], dim=-1)
