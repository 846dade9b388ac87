"""The autograd update captured as one CUDA graph and replayed, as LeanRL does: on a GPU the update is a few
hundred tiny kernels, and launching them one by one from Python costs more than running them.

Capture needs fixed addresses: the batch and the noise are copied into static tensors, the parameters,
gradients and Adam moments are flat buffers that never move, gradients are zeroed in place (never set to
None), and Adam's step-dependent factors are device tensors set before each replay. The Polyak step runs
after the replay (one kernel), so one graph serves every step. Any failure to capture is logged and the
update runs uncaptured."""
from __future__ import annotations

import contextlib
import logging
from typing import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)
WARMUP_UPDATES = 3  # run on a side stream before capture (allocator and library handles), then undone


class CudaGraphs:
    """The CUDA calls that capture takes (tests stand in for them on a CPU)."""

    @contextlib.contextmanager
    def side_stream(self):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            yield
        torch.cuda.current_stream().wait_stream(side)

    def capture(self, fn: Callable[[], dict[str, Tensor]]) -> tuple[Callable[[], None], dict[str, Tensor]]:
        """(replay, the outputs the replays overwrite)."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = fn()
        return graph.replay, outputs


class CapturedUpdate:
    def __init__(self, agent, graphs: CudaGraphs | None = None):
        self.agent = agent
        self.graphs = graphs or CudaGraphs()
        self.replay: Callable[[], None] | None = None
        self.failed = False
        self.static: tuple | None = None
        self.outputs: dict[str, Tensor] | None = None

    def run(self, batch, eps: Tensor, polyak: bool) -> dict[str, Tensor]:
        agent = self.agent
        if self.failed:
            return agent._update_fn(batch, eps, polyak)
        if self.replay is None:
            try:
                self._capture(batch, eps)
            except Exception as e:  # capture limits differ across torch versions and drivers
                self.failed = True
                log.warning("CUDA graph capture of the update failed (%s: %s); the update runs uncaptured, slower",
                            type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
                return agent._update_fn(batch, eps, polyak)
        static_batch, static_eps = self.static
        for dst, src in zip(static_batch, batch):
            dst.copy_(src)
        static_eps.copy_(eps)
        self.replay()
        if polyak:
            agent.polyak()
        return self.outputs

    def _capture(self, batch, eps: Tensor) -> None:
        agent = self.agent
        saved = agent.snapshot()
        static_batch = type(batch)(*(t.clone() for t in batch))
        static_eps = eps.clone()

        def update() -> dict[str, Tensor]:
            return agent._update_fn(static_batch, static_eps, False, polyak_inside=False)

        try:
            with self.graphs.side_stream():
                for _ in range(WARMUP_UPDATES):  # compiles too, when torch.compile wraps the losses
                    update()
            self.replay, self.outputs = self.graphs.capture(update)
        finally:
            agent.restore(saved)  # warm-up and capture moved the parameters: undo
        self.static = (static_batch, static_eps)
        log.info("update captured as a CUDA graph")
