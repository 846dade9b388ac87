"""The autograd update captured as one CUDA graph and replayed, as LeanRL does: on a GPU the update is a few
hundred tiny kernels, and launching them one by one from Python costs more than running them.

Capture needs fixed addresses: the batch and the noise are copied into static tensors, the parameters,
gradients and Adam moments are flat buffers that never move, gradients are zeroed in place (never set to
None), and Adam's step-dependent factors are device tensors set before each replay. The Polyak step runs
after the replay (one kernel), so one graph serves every step. Any failure to capture is logged and the
update runs uncaptured."""
from __future__ import annotations

import logging

import torch
from torch import Tensor

from .batch import Batch

log = logging.getLogger(__name__)
WARMUP_UPDATES = 3  # run on a side stream before capture (allocator and library handles), then undone


class CapturedUpdate:
    def __init__(self, agent):
        self.agent = agent
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.static: tuple[Batch, Tensor] | None = None
        self.outputs: dict[str, Tensor] | None = None

    def run(self, batch: Batch, eps: Tensor, polyak: bool) -> dict[str, Tensor]:
        agent = self.agent
        fn = agent._update_fn
        if self.failed:
            return fn(batch, eps, polyak)
        if self.graph is None:
            try:
                self._capture(batch, eps)
            except Exception as e:  # capture limits differ across torch versions and drivers
                self.failed = True
                log.warning("CUDA graph capture of the update failed (%s: %s); the update runs uncaptured, slower",
                            type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
                return fn(batch, eps, polyak)
        static_batch, static_eps = self.static
        for dst, src in zip(static_batch, batch):
            dst.copy_(src)
        static_eps.copy_(eps)
        self.graph.replay()
        if polyak:
            agent.polyak()
        return self.outputs

    def _capture(self, batch: Batch, eps: Tensor) -> None:
        agent = self.agent
        fn = agent._update_fn
        saved = agent.snapshot()
        static_batch = Batch(*(t.clone() for t in batch))
        static_eps = eps.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_UPDATES):  # compiles too, when torch.compile wraps the update
                fn(static_batch, static_eps, False, polyak_inside=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = fn(static_batch, static_eps, False, polyak_inside=False)
        agent.restore(saved)  # warm-up and capture moved the parameters: undo
        self.graph, self.static, self.outputs = graph, (static_batch, static_eps), outputs
        log.info("update captured as a CUDA graph")
