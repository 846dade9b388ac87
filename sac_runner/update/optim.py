"""Parameters in one flat buffer, and Adam over that buffer in one fused kernel call.

With every tensor of a network a view into one buffer (and every gradient a view into another), an
optimizer step, a Polyak average or a finiteness check is a single op over one tensor instead of a loop
over many small ones.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor


class FlatParameters:
    """Rebinds tensors (their .data and .grad) as views of one parameter buffer and one gradient buffer."""

    def __init__(self, params: Sequence[Tensor], grads: bool = True):
        params = list(params)
        first = params[0]
        self.data = torch.cat([p.detach().reshape(-1) for p in params])
        self.grad = torch.zeros_like(self.data) if grads else None
        offset = 0
        for p in params:
            n = p.numel()
            p.data = self.data[offset:offset + n].view_as(p)
            if grads:
                p.grad = self.grad[offset:offset + n].view_as(p)
            offset += n
        assert first.data.data_ptr() == self.data.data_ptr()

    def __len__(self) -> int:
        return self.data.numel()

    def slot_of(self, p: Tensor) -> Slot:
        """Where parameter p lies in the buffer (and its gradient in the gradient buffer)."""
        offset = (p.data_ptr() - self.data.data_ptr()) // p.element_size()
        assert 0 <= offset and offset + p.numel() <= len(self), "not a view of this buffer"
        return Slot(offset, tuple(p.shape))


class Slot(NamedTuple):
    """A tensor's place in a flat buffer. at(buffer) is its view in any buffer of that layout: the
    parameters, their gradients, a low-precision copy."""
    offset: int
    shape: tuple[int, ...]

    def at(self, buffer: Tensor) -> Tensor:
        return buffer[self.offset:self.offset + math.prod(self.shape)].view(self.shape)


class LowPrecisionCopy:
    """The buffer of a FlatParameters in another dtype (bfloat16 matmul weights), refreshed by sync()."""

    def __init__(self, source: FlatParameters, dtype: torch.dtype):
        self.source = source
        self.data = source.data.to(dtype)

    def sync(self) -> None:
        self.data.copy_(self.source.data)


class FlatAdam:
    """Adam (Kingma & Ba 2015, as torch.optim.Adam without weight decay) over a FlatParameters buffer."""

    def __init__(self, flat: FlatParameters, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, compiled: bool = False):
        self.flat = flat
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = torch.zeros_like(flat.data)
        self.exp_avg_sq = torch.zeros_like(flat.data)
        device = flat.data.device
        self.steps = 0  # counted on the host: the bias corrections never need a read from the device
        self.step_count = torch.zeros((), device=device)  # the same count as the fused kernel reads it
        self._step_size = torch.zeros((), device=device)  # lr / (1 - beta1^t)
        self._bias_correction2_sqrt = torch.ones((), device=device)  # sqrt(1 - beta2^t)
        self._fused = _has_fused_adam(device) and not compiled  # under torch.compile inductor fuses the formula

    def advance(self) -> None:
        """Count the coming step and set its bias corrections. Called before step(), outside a compiled update:
        there, Python numbers would be constants and recompile the graph every step."""
        self.steps += 1
        if self._fused:
            self.step_count.fill_(self.steps)
        else:
            beta1, beta2 = self.betas
            self._step_size.fill_(self.lr / (1 - beta1 ** self.steps))
            self._bias_correction2_sqrt.fill_(math.sqrt(1 - beta2 ** self.steps))

    def run_eagerly(self) -> None:
        """Steps from now on are not compiled: the fused kernel where this build has one."""
        self._fused = _has_fused_adam(self.flat.data.device)
        self.step_count.fill_(self.steps)

    def step(self) -> None:
        beta1, beta2 = self.betas
        if self._fused and not torch.compiler.is_compiling():
            torch._fused_adam_([self.flat.data], [self.flat.grad], [self.exp_avg], [self.exp_avg_sq], [],
                               [self.step_count], lr=self.lr, beta1=beta1, beta2=beta2, weight_decay=0.0,
                               eps=self.eps, amsgrad=False, maximize=False)
            return
        self.exp_avg.lerp_(self.flat.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.flat.grad, self.flat.grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / self._bias_correction2_sqrt).add_(self.eps)
        self.flat.data.addcdiv_(self.exp_avg, denom / -self._step_size)

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        for key in ("exp_avg", "exp_avg_sq"):
            if state[key].shape != self.exp_avg.shape:
                raise ValueError(f"optimizer state '{key}' has shape {tuple(state[key].shape)}, "
                                 f"expected {tuple(self.exp_avg.shape)}")
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps = int(state["steps"])
        self.step_count.fill_(self.steps)


def _has_fused_adam(device: torch.device) -> bool:
    """torch._fused_adam_ is a private op: use it where this build has it for the device."""
    try:
        t = torch.zeros(1, device=device)
        torch._fused_adam_([t.clone()], [t.clone()], [t.clone()], [t.clone()], [], [torch.ones((), device=device)],
                           lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False,
                           maximize=False)
        return True
    except (AttributeError, RuntimeError, TypeError):
        return False
